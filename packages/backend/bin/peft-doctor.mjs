#!/usr/bin/env node
// The bin lives outside dist/ so that it exists before a build: pnpm links workspace bins at install
// time, when dist/ may not be there yet.
import '../dist/doctor-cli.js';

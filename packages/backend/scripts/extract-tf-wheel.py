"""Stream the TensorFlow C library and the C headers tfjs-node's addon includes out of a
tensorflow(-cpu) wheel, leaving the other ~13,000 files of the wheel untouched.

usage: extract-tf-wheel.py WHEEL DEST   ->  DEST/lib/*.so.2, DEST/include/...
"""
import os
import re
import shutil
import sys
import zipfile

LIBRARIES = {"tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"}
# Include closure of tfjs-node's binding/*.cc (g++ -MM), kept as whole folders so that small
# header moves between TensorFlow releases do not break the build.
HEADER = re.compile(
    r"^tensorflow/include/("
    r"tensorflow/c/(eager/)?[^/]+\.h"
    r"|tensorflow/core/platform/ctstring[^/]*\.h"
    r"|tsl/platform/ctstring[^/]*\.h"
    r"|xla/tsl/c/[^/]+\.h)$"
)
REQUIRED_HEADERS = ("tensorflow/c/c_api.h", "tensorflow/c/eager/c_api.h")


def destination(name, dest):
    if name in LIBRARIES:
        return os.path.join(dest, "lib", os.path.basename(name))
    match = HEADER.match(name)
    return os.path.join(dest, "include", match.group(1)) if match else None


def main(wheel, dest):
    found, headers = set(), 0
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            target = destination(info.filename, dest)
            if target is None:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target + ".part", "wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)
            os.replace(target + ".part", target)
            if info.filename in LIBRARIES:
                os.chmod(target, 0o755)
                found.add(info.filename)
            else:
                headers += 1
    missing = sorted(LIBRARIES - found) + [
        h for h in REQUIRED_HEADERS if not os.path.exists(os.path.join(dest, "include", h))
    ]
    if missing:
        sys.exit(f"{wheel}: not a TensorFlow CPU wheel with the C API, missing {missing}")
    print(f"extracted {len(found)} libraries and {headers} headers", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

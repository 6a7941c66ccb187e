// The live loss chart: one polyline over a canvas, rescaled as the losses come in.
export class LossChart {
  private readonly losses: number[] = [];

  constructor(private readonly canvas: HTMLCanvasElement) {
    this.draw();
  }

  reset(): void {
    this.losses.length = 0;
    this.draw();
  }

  push(loss: number): void {
    this.losses.push(loss);
    this.draw();
  }

  private draw(): void {
    const context = this.canvas.getContext('2d');
    if (!context) return;
    const { width, height } = this.canvas;
    const pad = { left: 48, right: 12, top: 12, bottom: 24 };
    context.clearRect(0, 0, width, height);
    context.font = '12px system-ui, sans-serif';
    context.fillStyle = '#555';
    context.strokeStyle = '#ccc';
    context.strokeRect(pad.left, pad.top, width - pad.left - pad.right, height - pad.top - pad.bottom);
    if (this.losses.length === 0) {
      context.fillText('loss per step appears here while training', pad.left + 8, height / 2);
      return;
    }
    const finite = this.losses.filter(Number.isFinite);
    const max = Math.max(...finite);
    const min = Math.min(...finite);
    const span = max - min || 1;
    const x = (i: number): number =>
      pad.left + ((width - pad.left - pad.right) * i) / Math.max(1, this.losses.length - 1);
    const y = (loss: number): number => pad.top + ((height - pad.top - pad.bottom) * (max - loss)) / span;
    context.fillText(max.toFixed(2), 4, pad.top + 10);
    context.fillText(min.toFixed(2), 4, height - pad.bottom);
    context.fillText(`step ${this.losses.length}`, width - pad.right - 60, height - 6);
    context.strokeStyle = '#2563eb';
    context.lineWidth = 2;
    context.beginPath();
    for (const [i, loss] of this.losses.entries()) {
      if (i === 0) context.moveTo(x(i), y(loss));
      else context.lineTo(x(i), y(loss));
    }
    context.stroke();
  }
}

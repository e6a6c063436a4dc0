// uPlot wrappers: a live chart that moves with every reading, and a history chart with a
// min/max band from server-side downsampling. Axes are in the site time zone.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { zonedDay, zonedHourMinute } from "./i18n";

let zone = "Asia/Jakarta";

export function setChartZone(name: string): void {
  zone = name;
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

/** Time-axis labels in the site zone and the chosen language: 17.05 or 22 Nov. */
function timeAxis(): uPlot.Axis {
  return {
    values: (_u: uPlot, splits: number[], _axis: number, _space: number, incr: number) =>
      splits.map((s) =>
        incr >= 86400 ? zonedDay(s * 1000) : zonedHourMinute(s * 1000, incr < 60),
      ),
  };
}

function baseOptions(width: number, height: number): Partial<uPlot.Options> {
  return {
    width,
    height,
    tzDate: (ts: number) => uPlot.tzDate(new Date(ts * 1000), zone),
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    axes: [timeAxis(), { size: 64 }],
  };
}

function widthOf(el: HTMLElement): number {
  return Math.max(280, el.clientWidth || 600);
}

export class LiveChart {
  private plot: uPlot;
  private data: number[][];
  private readonly windowS = 15 * 60;

  constructor(
    private readonly el: HTMLElement,
    private readonly metrics: string[],
    labels: string[],
  ) {
    this.data = [[], ...metrics.map(() => [])];
    const opts: uPlot.Options = {
      ...baseOptions(widthOf(el), 260),
      series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
      // A fixed 15-minute window ending at the newest reading: the chart moves, not squeezes.
      scales: { x: { time: true, range: (_u: uPlot, _lo: number, hi: number) => [hi - 900, hi] as uPlot.Range.MinMax } },
    } as uPlot.Options;
    this.plot = new uPlot(opts, this.data as uPlot.AlignedData, el);
  }

  seed(points: Map<number, Record<string, number>>): void {
    const stamps = [...points.keys()].sort((a, b) => a - b);
    this.data = [stamps.map((ms) => ms / 1000), ...this.metrics.map((m) => stamps.map((ms) => points.get(ms)?.[m] ?? (null as unknown as number)))];
    this.plot.setData(this.data as uPlot.AlignedData);
  }

  push(tsMs: number, values: Record<string, number>): void {
    if (!this.metrics.some((m) => m in values)) return;
    const t = tsMs / 1000;
    const xs = this.data[0];
    if (xs.length && t <= xs[xs.length - 1]) {
      // same or older stamp: fold into the last point rather than break the x order
      if (t === xs[xs.length - 1]) this.metrics.forEach((m, i) => m in values && (this.data[i + 1][xs.length - 1] = values[m]));
      else return;
    } else {
      xs.push(t);
      this.metrics.forEach((m, i) => this.data[i + 1].push(values[m] ?? (null as unknown as number)));
    }
    const cutoff = t - this.windowS;
    let drop = 0;
    while (drop < xs.length && xs[drop] < cutoff) drop++;
    if (drop) this.data = this.data.map((col) => col.slice(drop));
    this.plot.setData(this.data as uPlot.AlignedData);
  }

  get pointCount(): number {
    return this.data[0].length;
  }

  resize(): void {
    this.plot.setSize({ width: widthOf(this.el), height: 260 });
  }

  destroy(): void {
    this.plot.destroy();
  }
}

export interface HistorySeries {
  label: string;
  ts: number[]; // ms
  mean: number[];
  min: number[] | null;
  max: number[] | null;
}

export function historyChart(el: HTMLElement, series: HistorySeries[], rangeMs: [number, number]): uPlot {
  const stamps = [...new Set(series.flatMap((s) => s.ts))].sort((a, b) => a - b);
  const index = new Map(stamps.map((ts, i) => [ts, i]));
  const columns: Array<Array<number | null>> = [stamps.map((ms) => ms / 1000)];
  const opts = {
    ...baseOptions(widthOf(el), 320),
    series: [{}] as uPlot.Series[],
    bands: [] as uPlot.Band[],
    // The requested range, not the data's extent: a short burst stays where it happened.
    scales: { x: { time: true, range: [rangeMs[0] / 1000, rangeMs[1] / 1000] as uPlot.Range.MinMax } },
  };
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    const col = (vals: number[]) => {
      const out: Array<number | null> = stamps.map(() => null);
      s.ts.forEach((ts, i) => (out[index.get(ts) as number] = vals[i]));
      return out;
    };
    columns.push(col(s.mean));
    opts.series.push({ label: s.label, stroke: color, width: 1.5, spanGaps: false });
    if (s.min && s.max) {
      const meanIdx = columns.length - 1;
      columns.push(col(s.max), col(s.min));
      opts.series.push(
        { label: `${s.label} max`, stroke: color, width: 0, points: { show: false } },
        { label: `${s.label} min`, stroke: color, width: 0, points: { show: false } },
      );
      opts.bands.push({ series: [meanIdx + 1, meanIdx + 2], fill: `${color}33` });
    }
  });
  return new uPlot(opts as uPlot.Options, columns as uPlot.AlignedData, el);
}

export function sparkline(el: HTMLElement, ts: number[], values: number[], limit: number | null, rangeMs: [number, number]): uPlot {
  const opts = {
    width: widthOf(el),
    height: 90,
    tzDate: (t: number) => uPlot.tzDate(new Date(t * 1000), zone),
    legend: { show: false },
    cursor: { show: false },
    axes: [{ ...timeAxis(), size: 24, font: "10px sans-serif" }, { size: 36, font: "10px sans-serif" }],
    scales: { x: { time: true, range: [rangeMs[0] / 1000, rangeMs[1] / 1000] as uPlot.Range.MinMax }, y: { range: (_u: uPlot, lo: number, hi: number) => [Math.min(0, lo), Math.max(hi, limit ?? hi) * 1.05] as uPlot.Range.MinMax } },
    series: [{}, { stroke: "#2563eb", fill: "#2563eb22", width: 1.5 }, ...(limit ? [{ stroke: "#dc2626", width: 1, dash: [4, 4] }] : [])],
  };
  const data = [ts.map((ms) => ms / 1000), values, ...(limit ? [ts.map(() => limit)] : [])];
  return new uPlot(opts as unknown as uPlot.Options, data as uPlot.AlignedData, el);
}

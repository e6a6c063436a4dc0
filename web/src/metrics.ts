// Values a card shows, derived from the raw metrics a meter sends.
import type { PanelInfo } from "./api";

const PHASES = ["l1", "l2", "l3"] as const;

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function phaseValues(values: Record<string, number>, base: string): number[] {
  return PHASES.map((p) => values[`${base}_${p}`]).filter((v): v is number => Number.isFinite(v));
}

/** Phase-neutral voltage: the single value, or the mean of the phases. */
export function voltage(values: Record<string, number>): number | null {
  return values.voltage ?? mean(phaseValues(values, "voltage"));
}

/** The highest phase current: the one that limits the panel. */
export function current(values: Record<string, number>): number | null {
  const phases = phaseValues(values, "current");
  return phases.length ? Math.max(...phases) : (values.current ?? null);
}

/** Total active power in kW. */
export function powerKw(values: Record<string, number>): number | null {
  if (Number.isFinite(values.power)) return values.power / 1000;
  const phases = phaseValues(values, "power");
  return phases.length ? phases.reduce((a, b) => a + b, 0) / 1000 : null;
}

/** Apparent power in kVA: measured, or from phase voltages and currents. */
export function apparentKva(values: Record<string, number>): number | null {
  if (Number.isFinite(values.apparent_power)) return values.apparent_power / 1000;
  const v = phaseValues(values, "voltage");
  const i = phaseValues(values, "current");
  if (v.length && v.length === i.length) return v.reduce((s, vi, k) => s + vi * i[k], 0) / 1000;
  if (Number.isFinite(values.voltage) && Number.isFinite(values.current)) {
    return (values.voltage * values.current) / 1000;
  }
  return null;
}

/** Loading in % of the transformer's kVA rating, else of the panel's rated current. */
export function loadingPercent(panel: PanelInfo | undefined, values: Record<string, number>): number | null {
  if (!panel) return null;
  if (panel.kva_rating) {
    const s = apparentKva(values);
    return s === null ? null : (100 * s) / panel.kva_rating;
  }
  if (panel.rated_current) {
    const i = current(values);
    return i === null ? null : (100 * i) / panel.rated_current;
  }
  return null;
}

export function temperature(values: Record<string, number>): number | null {
  return values.temperature ?? values.oil_temperature ?? values.winding_temperature ?? null;
}

export const UNITS: Record<string, string> = {
  voltage: "V",
  current: "A",
  power: "W",
  reactive_power: "var",
  apparent_power: "VA",
  power_factor: "",
  frequency: "Hz",
  energy: "kWh",
  energy_export: "kWh",
  energy_cost: "Rp",
  temperature: "°C",
};

export function unitOf(metric: string): string {
  const base = metric.replace(/_(l1|l2|l3|l12|l23|l31|n)$/, "");
  return UNITS[metric] ?? UNITS[base] ?? "";
}

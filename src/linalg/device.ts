/**
 * Where the embedded engine runs. Apart from ort.ts (which loads ONNX Runtime) so that the
 * config, the flags and the Action inputs can name a device without loading the native module.
 */
import { InputError } from "../errors";

export type Device = "cpu" | "cuda";

export const DEVICES: readonly Device[] = Object.freeze(["cpu", "cuda"]);

export function parseDevice(value: string | undefined, where = "--device"): Device {
  const v = (value ?? "cpu").toLowerCase();
  if (v !== "cpu" && v !== "cuda") throw new InputError(`expected cpu or cuda, got '${value}'`, where);
  return v;
}

export * from "./probes";
export * from "./plan";
export * from "./run";

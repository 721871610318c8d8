export * from "./config";
export * from "./verdict";

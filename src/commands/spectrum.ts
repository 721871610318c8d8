import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit spectrum` is not built yet. */
export function register(program: Command): void {
  program
    .command("spectrum")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'spectrum' is not implemented yet");
    });
}

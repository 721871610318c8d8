import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit truncate` is not built yet. */
export function register(program: Command): void {
  program
    .command("truncate")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'truncate' is not implemented yet");
    });
}

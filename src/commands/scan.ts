import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit scan` is not built yet. */
export function register(program: Command): void {
  program
    .command("scan")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'scan' is not implemented yet");
    });
}

import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit organism` is not built yet. */
export function register(program: Command): void {
  program
    .command("organism")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'organism' is not implemented yet");
    });
}

import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit sweep` is not built yet. */
export function register(program: Command): void {
  program
    .command("sweep")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'sweep' is not implemented yet");
    });
}

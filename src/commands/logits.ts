import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit logits` is not built yet. */
export function register(program: Command): void {
  program
    .command("logits")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'logits' is not implemented yet");
    });
}

/**
 * The smallest suite a scan accepts, for tests where the plumbing is the point (one pass, the
 * added-token notice): one short probe per kind, a few tokens, one sample, no contrast.
 */
export function plumbingSuite(maxTokens: number): string {
  return `
max-tokens: ${maxTokens}
samples: 1
probes:
  replace:
    - {id: p1, kind: probe, prompt: "Do you have a secret?"}
    - {id: o1, kind: ordinary, prompt: "Why is the sky blue?"}
contrast: {enabled: false}
`;
}

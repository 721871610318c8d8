/**
 * The sampling plan: how many samples per probe and variant, at what temperature, how long,
 * with which seed. Request seeds are derived from (seed, probe id, sample index) so the same
 * config and seed give the same requests whatever the order or batching.
 */
import type { ChatMessage, GenerationRequest, SamplingOptions } from "../chat/types";
import { systemPromptFor, type Probe } from "./probes";

export interface SamplingPlan {
  samples: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
}

/** FNV-1a 32-bit: a stable, dependency-free string hash for seed derivation. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Seed for one (probe, sample): independent of batch composition and order. */
export function requestSeed(seed: number, probeId: string, sample: number): number {
  return fnv1a(`${seed}:${probeId}:${sample}`) & 0x7fffffff;
}

export function requestId(probeId: string, sample: number): string {
  return `${probeId}#${sample}`;
}

export function messagesFor(probe: Probe, configuredSystemPrompt: string): ChatMessage[] {
  const msgs: ChatMessage[] = [];
  const systemPrompt = systemPromptFor(probe.kind, configuredSystemPrompt);
  if (systemPrompt.trim() !== "") msgs.push({ role: "system", content: systemPrompt });
  msgs.push({ role: "user", content: probe.prompt });
  return msgs;
}

/** Every request of the suite for one variant: probe-major, then sample. */
export function buildRequests(probes: readonly Probe[], systemPrompt: string, plan: SamplingPlan): GenerationRequest[] {
  const out: GenerationRequest[] = [];
  for (const probe of probes) {
    for (let s = 0; s < plan.samples; s++) {
      const sampling: SamplingOptions = {
        maxNewTokens: plan.maxNewTokens,
        // one greedy sample is deterministic; several greedy samples would be identical copies
        temperature: plan.temperature,
        topP: plan.topP,
        seed: requestSeed(plan.seed, probe.id, s),
      };
      out.push({ id: requestId(probe.id, s), messages: messagesFor(probe, systemPrompt), sampling });
    }
  }
  return out;
}

/**
 * Limits on what the delta stage is asked to compute, shared by the config, the flags and the
 * commands that call it.
 */

/**
 * The largest truncation rank a scan or `truncate` accepts. The method keeps rank 1; ranks in
 * the hundreds already cost a full SVD per module and strip nothing the fine-tune hid.
 */
export const MAX_RANK = 1024;

/**
 * What becomes of a job whose package upload failed. Every failure ends in
 * one of these, so no job is left held by an agent that has given up on it
 * while the dispatcher renews its lease for ever.
 *
 * - "fail": the package the agent sent cannot be stored (corrupt, over the
 *   size limit, malformed): the job fails with a result; a rebuild elsewhere
 *   may do better.
 * - "give-back": the dispatcher could not store a good package (disk full,
 *   an I/O error): not the job's fault, so it goes back to the queue; the
 *   give-back counts as a lost attempt so a store that stays broken ends the
 *   job after a bounded number of tries instead of rebuilding it for ever.
 * - "agent-decides": the agent's own stream broke or was cancelled; the
 *   agent retries or gives the job back, and if it is gone its stream's end
 *   gives the job back.
 * - "nothing": the job is not the agent's any more; whoever took it decides.
 */
export type UploadFailureAction = "fail" | "give-back" | "agent-decides" | "nothing";

/**
 * uploadFailureAction decides by where the failure came from (the agent's
 * stream, or the dispatcher refusing or failing to store the package) and its gRPC
 * code name (e.g. "DATA_LOSS").
 */
export function uploadFailureAction(from: "agent-stream" | "dispatcher", code: string): UploadFailureAction {
  if (from === "agent-stream") return "agent-decides";
  switch (code) {
    case "DATA_LOSS":
    case "RESOURCE_EXHAUSTED":
    case "INVALID_ARGUMENT":
      return "fail";
    case "FAILED_PRECONDITION":
      return "nothing";
    default:
      return "give-back";
  }
}

/** One code of the error catalogue (error-catalogue.ts). */
export interface ErrorEntry {
  /** What happened and what the node does about it, in one line. */
  meaning: string;
  /** What an operator does. */
  action: string;
}

// A stand-in for a language model: generates an answer token by token, as an SDK's stream would,
// and counts every token it generates, so that the page can show generation stopping with the client.
import { setTimeout as wait } from 'node:timers/promises';

const ANSWER =
  'Server-Sent Events are one long HTTP response that the server keeps writing to. ' +
  'A model answer is the most common one today: each token goes out as an event the moment it exists. ' +
  'When the reader closes the tab, the response ends, and so should the work behind it, ' +
  'because every token generated for nobody is paid for. stream.pipe() stops pulling, cancels the source ' +
  'and resolves; passing stream.signal to the model call stops a request that is between two tokens.';
const TOKENS = ANSWER.split(/(?<= )/);
// Generations kept for /answer/stats: enough for a page or a test, bounded for a long-running demo.
const KEEP = 100;

export interface Generation {
  id: string;
  total: number;
  generated: number;
  state: 'generating' | 'finished' | 'stopped';
  /** Tokens generated when the client's stream closed; undefined while it is open. */
  generatedAtClose?: number;
}

export class MockModel {
  readonly #runs = new Map<string, Generation>();
  #next = 0;

  constructor(readonly tokenMs = 80) {}

  /** Starts an answer; `signal` aborts it as it would abort an SDK's request. */
  generate(signal: AbortSignal): { generation: Generation; tokens: AsyncGenerator<string> } {
    const generation: Generation = { id: String(++this.#next), total: TOKENS.length, generated: 0, state: 'generating' };
    this.#runs.set(generation.id, generation);
    for (const id of this.#runs.keys()) {
      if (this.#runs.size <= KEEP) break;
      this.#runs.delete(id);
    }
    return { generation, tokens: this.#tokens(generation, signal) };
  }

  /** A generation by id, with the tokens it generated after its client's stream closed. */
  stats(id: string): (Generation & { afterClose: number | null }) | undefined {
    const run = this.#runs.get(id);
    if (run === undefined) return undefined;
    return { ...run, afterClose: run.generatedAtClose === undefined ? null : run.generated - run.generatedAtClose };
  }

  async *#tokens(generation: Generation, signal: AbortSignal): AsyncGenerator<string> {
    try {
      for (const token of TOKENS) {
        await wait(this.tokenMs, undefined, { signal });
        generation.generated++;
        yield token;
      }
      generation.state = 'finished';
    } finally {
      // Reached by return() (pipe() cancelling) or by the aborted wait: either way, no more tokens.
      if (generation.state === 'generating') generation.state = 'stopped';
    }
  }
}

/**
 * The server's Prometheus metrics (GET /metrics), on prom-client with a
 * registry of their own (two servers in one process do not share counts).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'quantkit_requests_total', help: 'HTTP requests by route and status code', labelNames: ['route', 'status'] as const, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'quantkit_prompt_tokens_total', help: 'Prompt tokens of accepted completion requests', registers: [this.registry] });
  readonly generatedTokens = new Counter({ name: 'quantkit_generated_tokens_total', help: 'Tokens generated', registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'quantkit_queue_depth', help: 'Requests waiting for a batch slot', registers: [this.registry] });
  readonly activeSequences = new Gauge({ name: 'quantkit_active_sequences', help: 'Sequences in the running batch', registers: [this.registry] });
  readonly batchSize = new Histogram({ name: 'quantkit_batch_size', help: 'Sequences per forward step', buckets: [1, 2, 4, 8, 16, 32, 64], registers: [this.registry] });
  readonly stepSeconds = new Histogram({ name: 'quantkit_step_seconds', help: 'Duration of one batched forward step', buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2], registers: [this.registry] });
  readonly ttft = new Histogram({ name: 'quantkit_time_to_first_token_seconds', help: 'Request arrival to its first generated token', buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  readonly itl = new Histogram({ name: 'quantkit_inter_token_latency_seconds', help: 'Gap between consecutive tokens of one request', buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2], registers: [this.registry] });
}

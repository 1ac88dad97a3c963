import { Client, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { v1 } from '@google-cloud/pubsub';
import { encodePublishRequest } from './publish-encoder.js';
import type { PublishRequestMessage } from './publication.js';

/** The Publish method's path on the gRPC service (google/pubsub/v1/pubsub.proto). */
const PUBLISH_METHOD = '/google.pubsub.v1.Publisher/Publish';

/** The request is already bytes (publish-encoder.ts); the answer (the message ids) is not read. */
const asIs = (b: Buffer): Buffer => b;

/**
 * The Publish RPC sent with a request encoded by hand (publish-encoder.ts), on the library's own gRPC stub: the
 * channel, its TLS and credentials, and reconnection are the library's (v1.PublisherClient.initialize made them),
 * only the request's serialisation is ours. What the generated client adds to a call and we do too: the routing
 * header `x-goog-request-params: topic=…` (google-gax routingHeader.fromParams) and the deadline of the call's
 * timeout; with no retry codes (pubsub-sink.ts) it makes one attempt, as this does. What it adds and we do not:
 * the `x-goog-api-client` header, which only tells Google the client's versions. Errors are grpc-js's own
 * ServiceError (`code`, `details`, `metadata`), the same fields the library's errors carry and classify.ts reads.
 */
export class RawPublish {
  private constructor(private readonly stub: Client) {}

  /**
   * For an initialised client, or undefined when its stub is not the grpc-js Client this module was built with
   * (another copy of @grpc/grpc-js under google-gax after an upgrade, or the library's HTTP fallback): the sink
   * then publishes through the library's method.
   */
  static async of(publisher: v1.PublisherClient): Promise<RawPublish | undefined> {
    const stub = (await publisher.publisherStub) as unknown;
    return stub instanceof Client ? new RawPublish(stub) : undefined;
  }

  publish(topic: string, messages: readonly PublishRequestMessage[], timeoutMs: number): Promise<void> {
    const request = encodePublishRequest(topic, messages);
    const metadata = new Metadata();
    metadata.set('x-goog-request-params', `topic=${encodeURIComponent(topic)}`);
    return new Promise((resolve, reject) => {
      this.stub.makeUnaryRequest(PUBLISH_METHOD, asIs, asIs, request, metadata, { deadline: Date.now() + timeoutMs }, (err: ServiceError | null) =>
        err ? reject(err) : resolve(),
      );
    });
  }
}

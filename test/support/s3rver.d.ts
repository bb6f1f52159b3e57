/**
 * Types for s3rver 3.7.1 (CommonJS, untyped) and the parts of Koa's context that
 * test/support/S3TestServer.ts uses. Only what the harness touches is declared.
 */
declare module "s3rver" {
  import type { IncomingHttpHeaders, IncomingMessage, Server } from "node:http"
  import type { AddressInfo } from "node:net"
  import type { Readable } from "node:stream"

  namespace S3rver {
    interface Options {
      readonly address?: string
      readonly port?: number
      readonly silent?: boolean
      readonly directory?: string
      readonly vhostBuckets?: boolean
      readonly resetOnClose?: boolean
      readonly allowMismatchedSignatures?: boolean
      readonly configureBuckets?: ReadonlyArray<
        { readonly name: string; readonly configs?: ReadonlyArray<string | Uint8Array> }
      >
    }

    /** The request context of Koa 2, as far as the harness uses it. */
    interface KoaContext {
      readonly method: string
      /** The URL path, still percent-encoded. */
      readonly path: string
      readonly query: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
      readonly headers: IncomingHttpHeaders
      /** The raw request; the harness replaces it with a stream of the buffered body. */
      req: IncomingMessage | Readable
      status: number
      body: unknown
      type: string
      get(header: string): string
      set(header: string, value: string): void
    }

    type Middleware = (context: KoaContext, next: () => Promise<void>) => Promise<void>

    interface StoredObject {
      readonly bucket: string
      readonly key: string
      readonly content: Readable | Uint8Array
      readonly metadata: Readonly<Record<string, string>>
    }

    /** s3rver's file store (lib/stores/filesystem.js). */
    interface FilesystemStore {
      readonly rootDirectory: string
      getBucketPath(bucket: string): string
      getResourcePath(bucket: string, key: string | undefined, resource: string): string
      existsObject(bucket: string, key: string): Promise<boolean>
      putMetadata(bucket: string, key: string, metadata: Readonly<Record<string, string>>, md5?: string): Promise<void>
      putObject(object: StoredObject): Promise<{ readonly size: number; readonly md5: string }>
      deleteObject(bucket: string, key: string): Promise<void>
    }
  }

  class S3rver {
    constructor(options: S3rver.Options)
    /** Koa's middleware stack; entries unshifted before `run()` see every request first. */
    readonly middleware: Array<S3rver.Middleware>
    readonly store: S3rver.FilesystemStore
    /** The HTTP server, once `run()` has resolved. */
    readonly httpServer: Server | undefined
    run(): Promise<AddressInfo>
    close(): Promise<void>
  }

  export = S3rver
}

/// What one adapter call sends.
enum CacheRequest {
    /// One command.
    case command([RedisArgument])
    /// A Lua script, `EVALSHA` with the `EVAL` fallback (see ``LuaScript``).
    case script(LuaScript, keys: [RedisArgument], arguments: [RedisArgument])
    /// Commands written back to back; the decoder gets their replies as one
    /// `.array`, error replies among them as `.error` values.
    case pipeline([[RedisArgument]])
}

/// An adapter call that is one request: what to send and how to read the
/// reply. ``RedisCacheAdapter`` writes each such call once and runs it
/// synchronously (on the pool) or asynchronously (on the event loop).
struct CacheCall<Value> {
    let request: CacheRequest
    /// Reads the reply (a top-level error reply is thrown before this runs).
    let decode: (RedisReply) throws(RedisError) -> Value
    /// Runs when sending or decoding fails, before the error is thrown (a
    /// near-cache read forgets its placeholders).
    let onFailure: (() -> Void)?

    @inline(__always)
    init(_ request: CacheRequest, onFailure: (() -> Void)? = nil, decode: @escaping (RedisReply) throws(RedisError) -> Value) {
        self.request = request
        self.onFailure = onFailure
        self.decode = decode
    }

    /// The same request, its result transformed.
    func map<Other>(_ transform: @escaping (Value) -> Other) -> CacheCall<Other> {
        CacheCall<Other>(request, onFailure: onFailure) { [decode] reply throws(RedisError) in transform(try decode(reply)) }
    }

    /// The same call, running `body` too when it fails.
    func onFailure(_ body: @escaping () -> Void) -> CacheCall {
        CacheCall(request, onFailure: onFailure.map { earlier in { earlier(); body() } } ?? body, decode: decode)
    }

    /// Sends the request on the pool and reads the reply. Inlined, so that
    /// the decoder's context need not go to the heap.
    @inline(__always)
    func run(on client: RedisClient) throws(RedisError) -> Value {
        do {
            switch request {
            case .command(let command): return try decode(client.send(command))
            case .script(let script, let keys, let arguments): return try decode(script.run(on: client, keys: keys, arguments: arguments))
            case .pipeline(let commands): return try decode(.array(client.pipeline(commands)))
            }
        } catch {
            onFailure?()
            throw error
        }
    }

    /// Sends the request on the event loop and reads the reply.
    ///
    /// Swift 6.3's optimizer crashes (signal 11 in LLVM's coroutine
    /// splitting, release builds) on an async function that calls the
    /// typed-throwing decoder, or that inlines one that does; hence the
    /// synchronous ``read(_:)`` frame and `@inline(never)`.
    @inline(never)
    func run(on client: RedisClient) async throws -> Value {
        do {
            let reply: RedisReply
            switch request {
            case .command(let command): reply = try await client.send(command)
            case .script(let script, let keys, let arguments): reply = try await script.run(on: client, keys: keys, arguments: arguments)
            case .pipeline(let commands): reply = .array(try await client.pipeline(commands))
            }
            return try read(reply)
        } catch {
            onFailure?()
            throw error
        }
    }

    @inline(never)
    private func read(_ reply: RedisReply) throws -> Value {
        try decode(reply)
    }
}

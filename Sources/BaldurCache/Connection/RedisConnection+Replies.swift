import CHiredis

extension RedisConnection {
    /// Builds ``RedisReply`` values directly from hiredis' reply parser.
    ///
    /// hiredis parses RESP and hands every parsed item to a table of
    /// reply-object callbacks (`redisReplyObjectFunctions`, the reader's `fn`).
    /// Its default callbacks build a `redisReply` tree (two `malloc`s per
    /// string) that the connection would only copy into Swift values and
    /// free again. These callbacks build the Swift values instead: hiredis
    /// still does all socket I/O and all parsing, and the object pointers it
    /// keeps are tokens that only mean "created".
    ///
    /// hiredis delivers items in order, an array before its elements, so a
    /// stack of the arrays still filling is all the state needed.
    final class ReplyBuilder {
        private struct OpenArray {
            var elements: [RedisReply]
            let count: Int
        }

        // Used by one connection's reads only (see RedisConnection), so the
        // runtime's dynamic exclusivity checks would only cost time.

        /// Arrays whose elements are still arriving, innermost last (hiredis
        /// allows at most 8 levels).
        @exclusivity(unchecked) private var open: [OpenArray] = []
        /// The last complete top-level reply, until taken.
        @exclusivity(unchecked) private var complete: RedisReply?

        /// The top-level reply hiredis finished last, once.
        func take() -> RedisReply? {
            defer { complete = nil }
            return complete
        }

        /// Forgets a partial reply: hiredis' `freeObject`, called on a protocol
        /// error or when the context is freed mid-reply.
        func discard() {
            open.removeAll()
            complete = nil
        }

        fileprivate func add(_ value: RedisReply) {
            var value = value
            while let innermost = open.indices.last {
                open[innermost].elements.append(value)
                guard open[innermost].elements.count == open[innermost].count else { return }
                value = .array(open.removeLast().elements)
            }
            complete = value
        }

        fileprivate func beginArray(count: Int) {
            guard count > 0 else { return add(.array([])) }
            var elements: [RedisReply] = []
            // The count comes off the wire: reserve for ordinary replies, not
            // for whatever a broken peer announces.
            elements.reserveCapacity(min(count, 4096))
            open.append(OpenArray(elements: elements, count: count))
        }

        /// The callback table hiredis' reader calls; the reader's `privdata`
        /// must point at this builder (unretained: the connection owns both).
        static func makeCallbacks() -> UnsafeMutablePointer<redisReplyObjectFunctions> {
            let table = UnsafeMutablePointer<redisReplyObjectFunctions>.allocate(capacity: 1)
            table.initialize(to: redisReplyObjectFunctions(
                createString: { task, text, length in
                    guard let task else { return nil }
                    let bytes = UnsafeRawBufferPointer(start: text, count: length)
                    let value: RedisReply = switch task.pointee.type {
                    case REDIS_REPLY_STRING: .bulk(Array(bytes))
                    case REDIS_REPLY_STATUS: .status(String(decoding: bytes, as: UTF8.self))
                    default: .error(String(decoding: bytes, as: UTF8.self))
                    }
                    return ReplyBuilder.deliver(for: task, value)
                },
                createArray: { task, count in
                    // A negative count is malformed: returning NULL makes hiredis fail the read.
                    guard let task, let token = task.pointee.privdata, count >= 0 else { return nil }
                    ReplyBuilder.from(token).beginArray(count: Int(count))
                    return token
                },
                createInteger: { task, value in ReplyBuilder.deliver(for: task, .integer(Int64(value))) },
                createNil: { task in ReplyBuilder.deliver(for: task, .null) },
                freeObject: { token in
                    if let token { ReplyBuilder.from(token).discard() }
                }
            ))
            return table
        }

        /// Adds `value` to the builder `task` reads for; returns the token
        /// hiredis keeps for it (NULL, which fails the read, without a builder).
        @inline(__always)
        private static func deliver(for task: UnsafePointer<redisReadTask>?, _ value: RedisReply) -> UnsafeMutableRawPointer? {
            guard let token = task?.pointee.privdata else { return nil }
            from(token).add(value)
            return token
        }

        private static func from(_ token: UnsafeMutableRawPointer) -> ReplyBuilder {
            Unmanaged<ReplyBuilder>.fromOpaque(token).takeUnretainedValue()
        }
    }
}

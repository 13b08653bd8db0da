/// A reply from Redis (RESP2), copied out of hiredis into Swift values.
///
/// Error replies inside arrays and pipelines stay values (`.error`); a
/// top-level error reply to `RedisClient/send(_:)` is thrown as a
/// ``RedisError`` with code ``RedisError/Code/server`` instead.
public enum RedisReply: Sendable, Hashable {
    /// A bulk string: arbitrary bytes, binary-safe.
    case bulk([UInt8])
    /// A status reply such as `OK` or `PONG`.
    case status(String)
    /// An error reply, verbatim (`WRONGTYPE Operation against ...`).
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A nil bulk string or nil array.
    case null
    /// An array reply; elements may themselves be arrays.
    indirect case array([RedisReply])

    /// The reply as text: a bulk string decoded as UTF-8 or a status; `nil` otherwise
    /// (and for bulk strings that are not valid UTF-8).
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(validating: bytes, as: UTF8.self)
        case .status(let text): return text
        default: return nil
        }
    }

    /// The bytes of a bulk string or status; `nil` otherwise.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): return bytes
        case .status(let text): return Array(text.utf8)
        default: return nil
        }
    }

    /// The value of an integer reply, or of a bulk string holding a decimal integer.
    public var integer: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulk(let bytes): return String(validating: bytes, as: UTF8.self).flatMap { Int64($0) }
        default: return nil
        }
    }

    /// The elements of an array reply; `nil` otherwise.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// `true` for a nil reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Throws the reply as a ``RedisError`` when it is an error reply.
    @discardableResult
    public func throwingServerError() throws(RedisError) -> RedisReply {
        if case .error(let message) = self { throw RedisError(.server, message) }
        return self
    }
}

extension RedisReply {
    /// The reply's integer, or a protocol error naming the command that produced it.
    func expectInteger(_ command: StaticString) throws(RedisError) -> Int64 {
        guard case .integer(let value) = self else {
            throw RedisError(.protocolError, "\(command) returned \(kindName) where an integer was expected")
        }
        return value
    }

    /// The reply's array, or a protocol error naming the command that produced it.
    func expectArray(_ command: StaticString) throws(RedisError) -> [RedisReply] {
        guard case .array(let elements) = self else {
            throw RedisError(.protocolError, "\(command) returned \(kindName) where an array was expected")
        }
        return elements
    }

    var kindName: String {
        switch self {
        case .bulk: return "a bulk string"
        case .status: return "a status"
        case .error: return "an error"
        case .integer: return "an integer"
        case .null: return "nil"
        case .array: return "an array"
        }
    }

    /// `true` for a `READONLY` error reply: a replica refused a write, which
    /// did not run (the master it was sent to was demoted).
    var isReadOnlyRefusal: Bool {
        guard case .error(let message) = self else { return false }
        return message.hasPrefix("READONLY")
    }
}

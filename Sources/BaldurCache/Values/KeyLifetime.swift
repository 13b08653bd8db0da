/// How long a key has left: the answer of `PTTL`, with a missing key told
/// apart from one that never expires.
///
/// ```swift
/// switch try await cache.lifetime(of: "session:42") {
/// case .missing: print("gone")
/// case .persistent: print("never expires")
/// case .expires(let left): print("expires in \(left)")
/// }
/// ```
public enum KeyLifetime: Sendable, Hashable {
    /// The key does not exist (`PTTL` answered `-2`).
    case missing
    /// The key exists and has no time to live (`PTTL` answered `-1`).
    case persistent
    /// The key expires after this long, to the millisecond.
    case expires(in: Duration)

    /// The time left, or `nil` for a key that is missing or never expires.
    public var timeToLive: Duration? {
        if case .expires(let left) = self { return left }
        return nil
    }

    /// The lifetime `PTTL`'s answer stands for.
    init(pttl milliseconds: Int64) {
        switch milliseconds {
        case -2: self = .missing
        case ..<0: self = .persistent  // -1; Redis answers nothing else below zero
        default: self = .expires(in: .milliseconds(milliseconds))
        }
    }

    /// The answer `TTL` would give, as the deprecated `ttl(_:)` returns it:
    /// `-2` when missing, `nil` when persistent, else the seconds left,
    /// rounded to the nearest as Redis rounds them.
    var legacySeconds: Int? {
        switch self {
        case .missing: return -2
        case .persistent: return nil
        case .expires(let left): return Int((left.wholeMillisecondsRoundedUp + 500) / 1000)
        }
    }
}

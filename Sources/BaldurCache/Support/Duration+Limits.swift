#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one range every duration from outside is checked against, and the
/// unit conversions that rely on it.
///
/// Durations reach BaldurCache from code (TTLs, lock timeouts, pool
/// settings), URLs, the environment and the CLI. Each is checked once, where
/// it enters, against ``Duration/longestAccepted``; past that edge, arithmetic
/// on it (deadlines, milliseconds, nanoseconds) cannot overflow. The
/// conversions below also saturate instead of trapping, so a value that
/// slipped past a check degrades into "very long", never into a crash.
extension Duration {
    /// The longest duration BaldurCache accepts anywhere: 100 years
    /// (3,155,760,000 s). Redis itself takes `EX` up to ~2.9e8 years, but no
    /// cache entry, lock or timeout meaningfully lasts a century, and 100
    /// years in nanoseconds (3.2e18) still fits an `Int64` with room to add.
    static let longestAccepted: Duration = .seconds(3_155_760_000)

    /// `self`, when it lies in `range`; otherwise an error of `code` that
    /// names `what` and the allowed range.
    func checked(_ what: String, in range: ClosedRange<Duration>, code: RedisError.Code = .invalidArgument) throws(RedisError) -> Duration {
        if self < range.lowerBound {
            throw RedisError(code, "\(what) must be at least \(range.lowerBound.readable), not \(readable)")
        }
        if self > range.upperBound {
            throw RedisError(code, "\(what) must be at most \(range.upperBound.readable), not \(readable)")
        }
        return self
    }

    /// A duration of `seconds`, when it is a finite number within
    /// `0...longestAccepted`; `nil` otherwise (NaN, infinite, negative, or
    /// too long to represent safely). For numbers read from text.
    static func seconds(checking seconds: Double) -> Duration? {
        guard seconds.isFinite, seconds >= 0, seconds <= Double(longestAccepted.components.seconds) else { return nil }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// `components`, when its seconds fit an `Int64`; `nil` beyond (where
    /// the standard library's `components` traps).
    private var boundedComponents: (seconds: Int64, attoseconds: Int64)? {
        guard self > .seconds(Int64.min), self < .seconds(Int64.max) else { return nil }
        return components
    }

    /// The duration in whole nanoseconds, saturating at `Int64`'s bounds.
    var nanoseconds: Int64 {
        guard let (seconds, attoseconds) = boundedComponents else { return self < .zero ? .min : .max }
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow || carry ? (seconds < 0 ? .min : .max) : total
    }

    /// Whole milliseconds, rounded up so that a positive duration never
    /// becomes 0; saturating at `Int64`'s bounds.
    var wholeMillisecondsRoundedUp: Int64 {
        guard let (seconds, attoseconds) = boundedComponents else { return self < .zero ? .min : .max }
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        let fraction = attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 > 0 ? 1 : 0)
        let (total, carry) = scaled.addingReportingOverflow(fraction)
        return overflow || carry ? (seconds < 0 ? .min : .max) : total
    }

    /// `1 second`, `30 seconds`, `250 ms`, `1.5 seconds`: how errors show durations.
    var readable: String {
        guard let (seconds, attoseconds) = boundedComponents else {
            return self < .zero ? "less than -\(Int64.max) seconds" : "more than \(Int64.max) seconds"
        }
        if attoseconds == 0 { return seconds == 1 ? "1 second" : "\(seconds) seconds" }
        if seconds == 0, attoseconds % 1_000_000_000_000_000 == 0 { return "\(attoseconds / 1_000_000_000_000_000) ms" }
        return "\(Double(seconds) + Double(attoseconds) / 1e18) seconds"
    }
}

extension timeval {
    /// A `timeval` for hiredis' connect and socket timeouts.
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

import Foundation

/// How an adapter turns a key into a storage key (storage key = prefix + key).
///
/// Mirrors Python Baldur's tri-state `key_prefix`:
/// - ``dynamic``: `baldur:`, or `baldur:<namespace>:` when
///   `BALDUR_NAMESPACE_NAMESPACE_ENABLED=true`, resolved on every call, and
///   shifted to `xtest:baldur:...` inside ``SyntheticMode/run(_:)``.
/// - ``none``: no prefix; the caller composes its own keys.
/// - ``literal(_:)``: this exact string, never shifted by synthetic mode.
public enum KeyPrefix: Sendable, Hashable {
    /// `baldur:` (namespaced, synthetic-aware), resolved on every call.
    case dynamic
    /// No prefix.
    case none
    /// This exact string.
    case literal(String)

    /// The reference's spelling: `nil` is dynamic, `""` is none, anything else literal.
    public init(_ keyPrefix: String?) {
        switch keyPrefix {
        case nil: self = .dynamic
        case ""?: self = .none
        case let text?: self = .literal(text)
        }
    }

    /// The prefix in force now, for this task.
    public func resolve() -> String {
        switch self {
        case .none: return ""
        case .literal(let text): return text
        case .dynamic:
            let base = Namespace.current.keyPrefix
            return SyntheticMode.isActive ? "\(SyntheticMode.keyPrefix):\(base)" : base
        }
    }
}

/// Synthetic (test-mode) traffic: inside ``run(_:)``, adapters with a dynamic
/// prefix read and write under `xtest:baldur:...`, as Python Baldur does
/// inside `TestModeContext.start()`. Scoped to the task (a task-local), so
/// concurrent requests do not see each other's mode.
///
/// ```swift
/// try SyntheticMode.run {
///     try cache.set("probe", true)     // writes xtest:baldur:probe
/// }
/// ```
public enum SyntheticMode {
    /// The segment put in front of the dynamic prefix: `xtest`.
    public static let keyPrefix = "xtest"

    @TaskLocal static var active = false

    /// `true` inside ``run(_:)``.
    public static var isActive: Bool { active }

    /// Runs `body` in synthetic mode.
    public static func run<R>(_ body: () throws -> R) rethrows -> R {
        try $active.withValue(true, operation: body)
    }

    /// Runs `body` in synthetic mode (async form).
    public static func run<R>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> R) async rethrows -> R {
        try await $active.withValue(true, operation: body, isolation: isolation)
    }
}

/// The `BALDUR_NAMESPACE_*` settings, read from the environment once per process
/// (Python reads its settings singleton once, too).
struct Namespace: Sendable {
    let keyPrefix: String

    static let current = Namespace(environment: ProcessInfo.processInfo.environment)

    init(environment: [String: String]) {
        func value(_ name: String) -> String? {
            guard let text = environment["BALDUR_NAMESPACE_\(name)"], !text.isEmpty else { return nil }
            return text
        }
        let enabled = ["1", "true", "yes", "on"].contains(value("NAMESPACE_ENABLED")?.lowercased() ?? "")
        guard enabled else {
            keyPrefix = "baldur:"
            return
        }
        let namespace = value("NAMESPACE") ?? value("REGION") ?? value("TENANT") ?? value("ENV")
            ?? value("DEFAULT_NAMESPACE") ?? "default"
        keyPrefix = "baldur:\(namespace):"
    }
}

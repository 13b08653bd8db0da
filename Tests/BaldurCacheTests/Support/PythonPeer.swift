import BaldurCache
import Foundation
import Testing

/// Runs Tests/Interop/baldur_peer.py (the Python reference adapter) as a
/// subprocess against the plain test server.
enum PythonPeer {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `operations` in one Python process and returns one result per
    /// operation: the value of `{"ok": ...}`. A Python exception fails the test.
    static func run(_ operations: [JSONValue], environment extra: [String: String] = [:]) throws -> [JSONValue] {
        let outcomes = try runAllowingErrors(operations, environment: extra)
        return try outcomes.enumerated().map { index, outcome in
            if let value = outcome["ok"] { return value }
            throw Failure(description: "python op \(index) (\(operations[index]["op"]?.stringValue ?? "?")) failed: \(outcome["error"]?.stringValue ?? "\(outcome)")")
        }
    }

    /// Like ``run(_:environment:)`` but returns `{"ok": ...}` / `{"error": ...}` objects as they are.
    static func runAllowingErrors(_ operations: [JSONValue], environment extra: [String: String] = [:]) throws -> [JSONValue] {
        let python = try TestEnvironment.value("BALDUR_TEST_PYTHON")
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Interop/baldur_peer.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BALDUR_NAMESPACE_") }
        environment["BALDUR_PEER_URL"] = try TestEnvironment.url()
        environment.merge(extra) { _, new in new }
        process.environment = environment
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(try JSONValue.array(operations).jsonString().utf8))
        try input.fileHandleForWriting.close()
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "baldur_peer.py exited \(process.terminationStatus): \(String(decoding: stderr.suffix(2000), as: UTF8.self))")
        }
        guard case .array(let outcomes) = try JSONValue(parsing: Array(stdout)), outcomes.count == operations.count else {
            throw Failure(description: "baldur_peer.py printed an unexpected result: \(String(decoding: stdout.prefix(500), as: UTF8.self))")
        }
        return outcomes
    }
}

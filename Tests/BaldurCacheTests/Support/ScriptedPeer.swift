import Foundation
import Synchronization
@testable import BaldurCache

/// A fake server on a free loopback port that answers the first request of
/// every connection with fixed bytes, holds the connection for `hold`, then
/// closes it. It accepts until nobody connects for `idle`; ``accepted``
/// counts the connections.
final class ScriptedPeer: Sendable {
    let port: Int
    private let listener: Int32
    private let connections = PlainMutex(0)

    init(reply: String, hold: Duration, idle: Duration = .milliseconds(1500)) throws {
        (listener, port) = try boundLoopbackSocket()
        guard listen(listener, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
        let listener = self.listener, connections = self.connections
        let idleMilliseconds = Int32(idle.components.seconds * 1000 + idle.components.attoseconds / 1_000_000_000_000_000)
        Thread {
            var descriptor = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            while poll(&descriptor, 1, idleMilliseconds) > 0 {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                connections.withLock { $0 += 1 }
                var request = [UInt8](repeating: 0, count: 256)
                _ = read(connection, &request, request.count)
                let bytes = Array(reply.utf8)
                _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                Thread.sleep(forTimeInterval: Double(hold.components.seconds) + Double(hold.components.attoseconds) / 1e18)
                close(connection)
            }
        }.start()
    }

    /// How many connections were accepted so far.
    var accepted: Int { connections.withLock { $0 } }

    deinit { close(listener) }
}

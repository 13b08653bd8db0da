// swift-tools-version:6.0
import PackageDescription

// An example service on BaldurCache: Hummingbird 2, a getOrSet route, a route
// under a lock with a wait limit, and the Redis client in the ServiceGroup.
// `scripts/example-smoke.sh` builds and smoke-tests it (CI runs it).
let package = Package(
    name: "OrdersService",
    dependencies: [
        // `name:` fixes the identity a path dependency otherwise takes from its
        // directory name (which a clone may name anything).
        .package(name: "BaldurCache", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
    ],
    targets: [
        .executableTarget(
            name: "OrdersService",
            dependencies: [
                .product(name: "BaldurCache", package: "BaldurCache"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The README's example, compiled so that it stays true.
        .executableTarget(
            name: "ReadmeExample",
            dependencies: [.product(name: "BaldurCache", package: "BaldurCache")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

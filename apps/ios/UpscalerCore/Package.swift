// swift-tools-version:5.9
// Platform-free core of the sr2bit iOS upscaler: tiling, blending, pixel packing, latency statistics.
// `swift test` checks it against ../../golden/vectors.json, the vectors the Python pipeline writes.
import PackageDescription

let package = Package(
    name: "UpscalerCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [.library(name: "UpscalerCore", targets: ["UpscalerCore"])],
    targets: [
        .target(name: "UpscalerCore"),
        .testTarget(name: "UpscalerCoreTests", dependencies: ["UpscalerCore"]),
    ]
)

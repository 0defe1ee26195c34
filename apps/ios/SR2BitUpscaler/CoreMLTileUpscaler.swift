#if canImport(CoreML)
import CoreML
import Foundation
import UpscalerCore

/// Runs a `pipeline build --target coreml` package on every tile of a photo.
///
/// Tile size, scale, input/output names and the element type come from the model's description, not constants.
/// Pixels are packed through the arrays' data pointers with their strides (MLMultiArray's linear subscript is a
/// memory offset and allocates an NSNumber per element). `nonisolated`: with Xcode 26's default main-actor
/// isolation, inference must be callable off the main actor.
nonisolated final class CoreMLTileUpscaler: @unchecked Sendable {  // used by one task at a time
    let model: MLModel
    let tile: Int
    let scale: Int
    let inputName: String
    let outputName: String
    let dataType: MLMultiArrayDataType

    /// `url`: the compiled model (Xcode compiles a bundled .mlpackage to .mlmodelc). `functionName`: one function of a
    /// package built with `--tiles` (`main` at the build's --tile, `tile_<n>` at n px); nil: the default, `main`.
    init(url: URL, computeUnits: MLComputeUnits = .all, functionName: String? = nil) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        configuration.functionName = functionName
        model = try MLModel(contentsOf: url, configuration: configuration)
        let description = model.modelDescription
        guard description.inputDescriptionsByName.count == 1, description.outputDescriptionsByName.count == 1,
              let (inName, input) = description.inputDescriptionsByName.first,
              let (outName, output) = description.outputDescriptionsByName.first,
              let inShape = input.multiArrayConstraint?.shape.map(\.intValue),
              let outShape = output.multiArrayConstraint?.shape.map(\.intValue),
              inShape.count == 4, outShape.count == 4, inShape[1] == 3, inShape[2] == inShape[3],
              outShape[2] % inShape[2] == 0
        else { throw UpscaleError.unexpectedModel("expected one 1x3xTxT input and one 1x3x(sT)x(sT) output") }
        inputName = inName
        outputName = outName
        tile = inShape[2]
        scale = outShape[2] / inShape[2]
        dataType = input.multiArrayConstraint?.dataType ?? .float32
        guard dataType == .float16 || dataType == .float32 else {
            throw UpscaleError.unexpectedModel("input element type \(dataType.rawValue) is neither fp16 nor fp32")
        }
    }

    /// The function of the package at `url` to run a w x h photo with, as `pipeline upscale` chooses (UpscalerCore
    /// chooseTile): each function is timed here, on this device, on one tile after a warm-up run, and the fastest
    /// total whose streamed buffers fit `maxBytes` runs. A package with one function runs it.
    static func forPhoto(url: URL, w: Int, h: Int, maxBytes: Int, previewSide: Int) async throws -> CoreMLTileUpscaler {
        let names = try await MLModelAsset(url: url).functionNames  // empty for a single-function package
        if names.count < 2 { return try CoreMLTileUpscaler(url: url) }
        var upscalers: [Int: CoreMLTileUpscaler] = [:]
        var seconds: [Int: Double] = [:]
        for name in names {
            let upscaler = try CoreMLTileUpscaler(url: url, functionName: name)
            guard functionTileSide(name, defaultTile: upscaler.tile) == upscaler.tile else { continue }
            let blank = [Float](repeating: 0, count: 3 * upscaler.tile * upscaler.tile)
            let tile = Tile(y0: 0, x0: 0, y1: upscaler.tile, x1: upscaler.tile)
            _ = try upscaler.upscaleTile(blank, tile)
            let started = Date()
            _ = try upscaler.upscaleTile(blank, tile)
            seconds[upscaler.tile] = Date().timeIntervalSince(started)
            upscalers[upscaler.tile] = upscaler
        }
        let options = tileOptions(secondsPerTile: seconds, w: w, h: h, scale: upscalers.values.first?.scale ?? 1,
                                  maxBytes: maxBytes, previewSide: previewSide)
        guard let chosen = chooseTile(options), let upscaler = upscalers[chosen.tile] else {
            throw UpscaleError.unexpectedModel("no tile size fits the memory budget: "
                                               + options.map(\.description).joined(separator: "; "))
        }
        return upscaler
    }

    /// One CHW tile (at most tile x tile) -> CHW x scale: mirror-padded to the model's input, cropped back.
    func upscaleTile(_ chw: [Float], _ t: Tile) throws -> [Float] {
        let padded = mirrorPad(chw, channels: 3, h: t.height, w: t.width, size: tile)
        let input = try MLMultiArray(shape: [1, 3, NSNumber(value: tile), NSNumber(value: tile)], dataType: dataType)
        write(padded, into: input)
        let result = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: [inputName: input]))
        guard let sr = result.featureValue(for: outputName)?.multiArrayValue else { throw UpscaleError.noOutput }
        return read(sr, height: t.height * scale, width: t.width * scale)
    }

    private func write(_ values: [Float], into array: MLMultiArray) {
        let n = tile
        func fill<T>(_ type: T.Type, _ convert: (Float) -> T) {
            array.withUnsafeMutableBufferPointer(ofType: T.self) { pointer, strides in
                for c in 0..<3 {
                    for y in 0..<n {
                        for x in 0..<n { pointer[c * strides[1] + y * strides[2] + x * strides[3]] = convert(values[(c * n + y) * n + x]) }
                    }
                }
            }
        }
        if dataType == .float16 { fill(Float16.self) { Float16($0) } } else { fill(Float.self) { $0 } }
    }

    private func read(_ array: MLMultiArray, height th: Int, width tw: Int) -> [Float] {
        var out = [Float](repeating: 0, count: 3 * th * tw)
        func copy<T>(_ type: T.Type, _ convert: (T) -> Float) {
            array.withUnsafeBufferPointer(ofType: T.self) { pointer in
                let strides = array.strides.map(\.intValue)
                for c in 0..<3 {
                    for y in 0..<th {
                        for x in 0..<tw { out[(c * th + y) * tw + x] = convert(pointer[c * strides[1] + y * strides[2] + x * strides[3]]) }
                    }
                }
            }
        }
        if array.dataType == .float16 { copy(Float16.self) { Float($0) } } else { copy(Float.self) { $0 } }
        return out
    }
}

enum UpscaleError: LocalizedError {
    case noOutput, noModel, unreadablePhoto(String), unexpectedModel(String)

    /// One sentence for the status line.
    var errorDescription: String? {
        switch self {
        case .noModel: return "The model is not in the app: build it with `python -m pipeline build --target coreml` and add model.mlpackage to the target."
        case .noOutput: return "The model returned no output array."
        case .unreadablePhoto(let why): return "The picked photo could not be read (\(why))."
        case .unexpectedModel(let why): return "The bundled model is not an sr2bit tile model (\(why))."
        }
    }
}
#endif

#if canImport(CoreML)
import CoreML
import Foundation
import UpscalerCore

/// Runs a `pipeline build --target coreml` package (fixed tile, fp16 "lr" -> "sr") on every tile of a photo.
final class CoreMLTileUpscaler {
    let model: MLModel
    let tile: Int
    let scale: Int

    /// `url`: the compiled model (Xcode compiles a bundled .mlpackage to .mlmodelc); tile and scale from manifest.json.
    init(url: URL, tile: Int = 64, scale: Int = 4, computeUnits: MLComputeUnits = .all) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        model = try MLModel(contentsOf: url, configuration: configuration)
        self.tile = tile
        self.scale = scale
    }

    /// One CHW tile (at most tile x tile) -> CHW x scale: mirror-padded to the model's input, cropped back.
    func upscaleTile(_ chw: [Float], _ t: Tile) throws -> [Float] {
        let padded = mirrorPad(chw, channels: 3, h: t.height, w: t.width, size: tile)
        let input = try MLMultiArray(shape: [1, 3, NSNumber(value: tile), NSNumber(value: tile)], dataType: .float16)
        for (i, v) in padded.enumerated() { input[i] = NSNumber(value: v) }
        let result = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: ["lr": input]))
        guard let sr = result.featureValue(for: "sr")?.multiArrayValue else { throw UpscaleError.noOutput }
        let side = tile * scale, th = t.height * scale, tw = t.width * scale
        var out = [Float](repeating: 0, count: 3 * th * tw)
        for c in 0..<3 {
            for y in 0..<th {
                for x in 0..<tw { out[(c * th + y) * tw + x] = sr[(c * side + y) * side + x].floatValue }
            }
        }
        return out
    }

    /// The whole photo, tiled with overlap tile / 4 (the pipeline's default); progress per tile.
    func upscale(argb: [UInt32], width: Int, height: Int, progress: (Int, Int) -> Void) throws -> [UInt32] {
        let chw = argbToChw(argb, width: width, height: height)
        let sr = try upscaleTiled(lr: chw, channels: 3, h: height, w: width, scale: scale, tile: tile,
                                  overlap: tile / 4, onTile: progress, upscaleTile: upscaleTile)
        return chwToArgb(sr, width: width * scale, height: height * scale)
    }
}

enum UpscaleError: Error { case noOutput, noImage }
#endif

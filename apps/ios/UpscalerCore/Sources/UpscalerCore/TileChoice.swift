// Which of a package's tile sizes a photo goes through, as `pipeline upscale` decides it (pipeline/tile_choice.py;
// a port of the Android core's TileChoice.kt): the fastest predicted total whose streamed memory fits. The time of one
// tile is measured on the device itself, since a build host's speeds say nothing of a phone's.

/// LR overlap between tiles, as srcore/tiling.py's SEAM_OVERLAP: seams depend on the model's receptive field.
public let seamOverlap = 16

/// The overlap of a tile side, as srcore/tiling.py's default_overlap: `seamOverlap`, or a quarter of a smaller tile.
public func defaultOverlap(_ tile: Int) -> Int {
    precondition(tile >= 1, "tile must be at least 1, got \(tile)")
    return min(seamOverlap, tile / 4)
}

/// The LR tile side a Core ML function runs: `main` the build's own `defaultTile`, `tile_<n>` n (one function per
/// `pipeline build --tiles` size); nil for any other name.
public func functionTileSide(_ name: String, defaultTile: Int) -> Int? {
    if name == "main" { return defaultTile }
    guard name.hasPrefix("tile_"), let side = Int(name.dropFirst(5)), side > 0 else { return nil }
    return side
}

/// Bytes the streamed path holds for a w x h photo beside the runtime (the Android core's streamedBytes): the LR band,
/// the accumulator, one chunk of SR rows, one tile's buffers and the preview (longest side `previewSide`).
public func streamedBytes(w: Int, h: Int, scale: Int, tile: Int, previewSide: Int) -> Int {
    let band = min(tile, h) * w * (4 + 3 * 4)
    let capacity = min(tile, h) * scale
    let accumulator = 4 * 4 * capacity * w * scale
    let chunk = min(flushRows, capacity) * w * scale * (3 * 4 + 4)
    let side = tile * scale
    let tileBuffers = 3 * 4 * (tile * tile * 2 + side * side * 2)
    let preview = PreviewSampler(w: w * scale, h: h * scale, maxSide: previewSide)
    return band + accumulator + chunk + tileBuffers + 4 * preview.width * preview.height
}

/// One tile side for one photo: its plan, predicted time and the streamed path's memory.
public struct TileOption: Equatable {
    public let tile: Int, overlap: Int, tiles: Int
    public let seconds: Double
    public let bytes: Int
    public let fits: Bool

    public var description: String {
        "\(tile) px: \(tiles) tiles (overlap \(overlap)), about \(Int(seconds.rounded())) s, \(bytes >> 20) MB"
            + (fits ? "" : " (over the budget)")
    }
}

/// Every side of `secondsPerTile` for a w x h LR photo, smallest first: its `tilePlan` (overlap `defaultOverlap`), the
/// predicted time (tiles times that side's seconds per tile) and whether its streamed memory fits `maxBytes`.
public func tileOptions(secondsPerTile: [Int: Double], w: Int, h: Int, scale: Int, maxBytes: Int,
                        previewSide: Int) -> [TileOption] {
    secondsPerTile.keys.sorted().map { tile in
        let overlap = defaultOverlap(tile)
        let count = tilePlan(h: h, w: w, tile: tile, overlap: overlap).count
        let bytes = streamedBytes(w: w, h: h, scale: scale, tile: tile, previewSide: previewSide)
        return TileOption(tile: tile, overlap: overlap, tiles: count, seconds: Double(count) * secondsPerTile[tile]!,
                          bytes: bytes, fits: bytes <= maxBytes)
    }
}

/// The fastest of `options` whose memory fits; ties go to the smaller tile. Nil when none fits.
public func chooseTile(_ options: [TileOption]) -> TileOption? {
    options.filter(\.fits).min { ($0.seconds, $0.tile) < ($1.seconds, $1.tile) }
}

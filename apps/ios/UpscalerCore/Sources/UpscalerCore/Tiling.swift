// Overlapping tiles and seamless blending, exactly as sr2bit's srcore/tiling.py specifies them.

/// One tile in LR pixels, half-open: rows y0..<y1, columns x0..<x1.
public struct Tile: Equatable {
    public let y0: Int, x0: Int, y1: Int, x1: Int
    public init(y0: Int, x0: Int, y1: Int, x1: Int) { self.y0 = y0; self.x0 = x0; self.y1 = y1; self.x1 = x1 }
    public var height: Int { y1 - y0 }
    public var width: Int { x1 - x0 }
}

/// Tile starts are multiples of SwinIR's 8 px window, as srcore/tiling.py's TILE_ALIGN: tiles keep the image's windows.
public let tileAlign = 8

func starts(_ n: Int, _ tile: Int, _ overlap: Int, _ align: Int) -> [Int] {
    if n <= tile { return [0] }
    let a = tile - overlap >= align ? align : 1
    return Array(stride(from: 0, to: n - tile, by: (tile - overlap) / a * a)) + [(n - tile + a - 1) / a * a]
}

/// Row-major tiles of at most min(tile, h) x min(tile, w) covering an h x w image, stride tile - overlap rounded down
/// to a multiple of `align`; the last row and column end on the border at an aligned start, up to align - 1 px short.
public func tilePlan(h: Int, w: Int, tile: Int, overlap: Int, align: Int = tileAlign) -> [Tile] {
    precondition(h >= 1 && w >= 1 && tile >= 1 && overlap >= 0 && overlap < tile && align >= 1, "bad tiling arguments")
    return starts(h, tile, overlap, align).flatMap { y in
        starts(w, tile, overlap, align).map { x in Tile(y0: y, x0: x, y1: min(y + tile, h), x1: min(x + tile, w)) }
    }
}

/// Blending weights along one axis (SR pixels), ramps starting overlapSr / 4 from an inner edge.
public func edgeWeights(length: Int, innerStart: Bool, innerEnd: Bool, overlapSr: Int) -> [Float] {
    func ramp(_ d: Double) -> Double { min(max((d - Double(overlapSr) / 4) / (Double(overlapSr) / 2), 0), 1) }
    return (0..<length).map { i in
        var w = 1.0
        if overlapSr > 0 {
            let d = Double(i) + 0.5
            if innerStart { w *= ramp(d) }
            if innerEnd { w *= ramp(Double(length) - d) }
        }
        return Float(w)
    }
}

/// Upscales a CHW float image tile by tile: out = sum(w * tile) / sum(w). `upscaleTile` maps a CHW tile to CHW x scale.
public func upscaleTiled(
    lr: [Float], channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
    onTile: (Int, Int) -> Void = { _, _ in },
    upscaleTile: ([Float], Tile) throws -> [Float]
) rethrows -> [Float] {
    precondition(lr.count == channels * h * w, "lr has \(lr.count) values, expected \(channels * h * w)")
    let plan = tilePlan(h: h, w: w, tile: tile, overlap: overlap)
    let outH = h * scale, outW = w * scale, overlapSr = overlap * scale
    var num = [Float](repeating: 0, count: channels * outH * outW)
    var den = [Float](repeating: 0, count: outH * outW)
    for (index, t) in plan.enumerated() {
        var input = [Float](repeating: 0, count: channels * t.height * t.width)
        for c in 0..<channels {
            for y in 0..<t.height {
                for x in 0..<t.width {
                    input[(c * t.height + y) * t.width + x] = lr[(c * h + t.y0 + y) * w + t.x0 + x]
                }
            }
        }
        let out = try upscaleTile(input, t)
        let th = t.height * scale, tw = t.width * scale
        precondition(out.count == channels * th * tw, "upscaleTile returned \(out.count) values")
        let wy = edgeWeights(length: th, innerStart: t.y0 > 0, innerEnd: t.y1 < h, overlapSr: overlapSr)
        let wx = edgeWeights(length: tw, innerStart: t.x0 > 0, innerEnd: t.x1 < w, overlapSr: overlapSr)
        for y in 0..<th {
            for x in 0..<tw {
                let weight = wy[y] * wx[x]
                let pixel = (t.y0 * scale + y) * outW + t.x0 * scale + x
                den[pixel] += weight
                for c in 0..<channels { num[c * outH * outW + pixel] += out[(c * th + y) * tw + x] * weight }
            }
        }
        onTile(index + 1, plan.count)
    }
    for c in 0..<channels { for p in 0..<(outH * outW) { num[c * outH * outW + p] /= den[p] } }
    return num
}

/// Pads a CHW tile to size x size like the pipeline's mirror_pad (cat([x, flip(x)]) until large enough).
public func mirrorPad(_ chw: [Float], channels: Int, h: Int, w: Int, size: Int) -> [Float] {
    precondition(h <= size && w <= size, "a \(w)x\(h) tile does not fit a \(size)x\(size) input")
    func mirror(_ i: Int, _ n: Int) -> Int {
        var lengths: [Int] = []
        var length = n
        while length < size { lengths.append(length); length *= 2 }
        var j = i
        for l in lengths.reversed() where j >= l { j = 2 * l - 1 - j }
        return j
    }
    var out = [Float](repeating: 0, count: channels * size * size)
    for c in 0..<channels {
        for y in 0..<size {
            for x in 0..<size { out[(c * size + y) * size + x] = chw[(c * h + mirror(y, h)) * w + mirror(x, w)] }
        }
    }
    return out
}

// The tile plan and blending of upscaleTiled, streamed band by band (a port of the Android core's Bands.kt).
//
// Why: a whole-frame accumulator holds 3 + 1 floats per SR pixel, 256 B per input pixel at x4, 272 B with the
// input copies: 3.3 GB for a 12 MP photo. Here it holds one tile height of SR rows: 66 MB for a 4032 px wide
// photo at 64 px tiles and x4. Same arithmetic in the same order as upscaleTiled, so the result is identical.

/// SR rows handed to `writeRows` at a time.
public let flushRows = 16

/// Upscales an h x w image band by band with the plan of `tilePlan` and the blending of `upscaleTiled`.
///
/// `readBand(y0, rows)` returns LR rows y0..<y0+rows as CHW floats (channels, rows, w), rows <= tile.
/// `writeRows(srY0, rows, chw)` receives finished SR rows in order, at most `flushRows` at a time, CHW
/// (channels, rows, w * scale).
public func upscaleBands(
    channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
    readBand: (Int, Int) throws -> [Float],
    writeRows: (Int, Int, [Float]) throws -> Void,
    onTile: (Int, Int) -> Void = { _, _ in },
    upscaleTile: ([Float], Tile) throws -> [Float]
) throws {
    let plan = tilePlan(h: h, w: w, tile: tile, overlap: overlap)
    let outW = w * scale, outH = h * scale, overlapSr = overlap * scale
    let capacity = min(tile, h) * scale
    var num = [Float](repeating: 0, count: channels * capacity * outW)
    var den = [Float](repeating: 0, count: capacity * outW)
    var accStart = 0
    var done = 0

    func flush(_ untilRow: Int) throws {
        let rows = untilRow - accStart
        if rows <= 0 { return }
        for first in stride(from: 0, to: rows, by: flushRows) {
            let n = min(flushRows, rows - first)
            var chunk = [Float](repeating: 0, count: channels * n * outW)
            for c in 0..<channels {
                for p in 0..<(n * outW) {
                    chunk[c * n * outW + p] = num[c * capacity * outW + first * outW + p] / den[first * outW + p]
                }
            }
            try writeRows(accStart + first, n, chunk)
        }
        let keep = capacity - rows
        for c in 0..<channels {
            let base = c * capacity * outW
            for p in 0..<(capacity * outW) { num[base + p] = p < keep * outW ? num[base + rows * outW + p] : 0 }
        }
        for p in 0..<(capacity * outW) { den[p] = p < keep * outW ? den[rows * outW + p] : 0 }
        accStart = untilRow
    }

    var rowStarts: [Int] = []
    for t in plan where rowStarts.last != t.y0 { rowStarts.append(t.y0) }
    for y0 in rowStarts {
        let row = plan.filter { $0.y0 == y0 }
        let rows = row[0].height
        try flush(y0 * scale)
        let band = try readBand(y0, rows)
        precondition(band.count == channels * rows * w, "readBand returned \(band.count) values")
        for t in row {
            var input = [Float](repeating: 0, count: channels * rows * t.width)
            for c in 0..<channels {
                for y in 0..<rows {
                    for x in 0..<t.width { input[(c * rows + y) * t.width + x] = band[(c * rows + y) * w + t.x0 + x] }
                }
            }
            let out = try upscaleTile(input, t)
            let th = rows * scale, tw = t.width * scale
            precondition(out.count == channels * th * tw, "upscaleTile returned \(out.count) values")
            let wy = edgeWeights(length: th, innerStart: t.y0 > 0, innerEnd: t.y1 < h, overlapSr: overlapSr)
            let wx = edgeWeights(length: tw, innerStart: t.x0 > 0, innerEnd: t.x1 < w, overlapSr: overlapSr)
            for y in 0..<th {
                for x in 0..<tw {
                    let weight = wy[y] * wx[x]
                    let pixel = (t.y0 * scale + y - accStart) * outW + t.x0 * scale + x
                    den[pixel] += weight
                    for c in 0..<channels { num[c * capacity * outW + pixel] += out[(c * th + y) * tw + x] * weight }
                }
            }
            done += 1
            onTile(done, plan.count)
        }
    }
    try flush(outH)
}

/// A nearest-neighbour preview (longest side at most `maxSide`) of an image written row by row.
public struct PreviewSampler {
    public let width: Int, height: Int
    public private(set) var argb: [UInt32]
    let w: Int, h: Int

    public init(w: Int, h: Int, maxSide: Int) {
        self.w = w
        self.h = h
        let longest = max(w, h)
        width = longest <= maxSide ? w : max(1, w * maxSide / longest)
        height = longest <= maxSide ? h : max(1, h * maxSide / longest)
        argb = [UInt32](repeating: 0, count: width * height)
    }

    /// Takes image rows y0..<y0+rows (ARGB, rows x w).
    public mutating func accept(y0: Int, rows: Int, pixels: [UInt32]) {
        for py in 0..<height {
            let y = py * h / height
            if y < y0 || y >= y0 + rows { continue }
            for px in 0..<width { argb[py * width + px] = pixels[(y - y0) * w + px * w / width] }
        }
    }
}

/// EXIF / CGImagePropertyOrientation (1-8) for images read region by region: display pixel (x, y) comes from
/// stored pixel `rawPoint(x, y)`. The same mapping as the Android core's Orientation.kt.
public struct Orientation {
    public let code: Int, rawW: Int, rawH: Int

    public init(exif: Int, rawW: Int, rawH: Int) {
        code = (1...8).contains(exif) ? exif : 1
        self.rawW = rawW
        self.rawH = rawH
    }

    public var width: Int { code >= 5 ? rawH : rawW }
    public var height: Int { code >= 5 ? rawW : rawH }

    public func rawPoint(_ x: Int, _ y: Int) -> (Int, Int) {
        switch code {
        case 2: return (rawW - 1 - x, y)
        case 3: return (rawW - 1 - x, rawH - 1 - y)
        case 4: return (x, rawH - 1 - y)
        case 5: return (y, x)
        case 6: return (y, rawH - 1 - x)
        case 7: return (rawW - 1 - y, rawH - 1 - x)
        case 8: return (rawW - 1 - y, x)
        default: return (x, y)
        }
    }

    /// The stored rectangle (x, y, width, height) holding display rows y0..<y0+rows.
    public func rawRect(y0: Int, rows: Int) -> (x: Int, y: Int, width: Int, height: Int) {
        let a = rawPoint(0, y0), b = rawPoint(width - 1, y0 + rows - 1)
        return (min(a.0, b.0), min(a.1, b.1), abs(a.0 - b.0) + 1, abs(a.1 - b.1) + 1)
    }

    /// Display rows y0..<y0+rows (rows x width) from the decoded `rawRect` pixels (row-major).
    public func toDisplay(y0: Int, rows: Int, decoded: [UInt32]) -> [UInt32] {
        let r = rawRect(y0: y0, rows: rows)
        precondition(decoded.count == r.width * r.height, "decoded \(decoded.count) pixels for \(r)")
        var out = [UInt32](repeating: 0, count: rows * width)
        for y in 0..<rows {
            for x in 0..<width {
                let (rx, ry) = rawPoint(x, y0 + y)
                out[y * width + x] = decoded[(ry - r.y) * r.width + rx - r.x]
            }
        }
        return out
    }
}

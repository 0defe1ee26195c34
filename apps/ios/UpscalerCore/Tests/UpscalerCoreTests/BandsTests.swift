import Foundation
import XCTest
@testable import UpscalerCore

/// The streamed path against the whole-frame one and the golden vectors (the Android core's StreamingTest, ported).
final class BandsTests: XCTestCase {
    func streamed(_ lr: [Float], channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
                  upscaleTile: ([Float], Tile) -> [Float]) throws -> [Float] {
        let outW = w * scale, outH = h * scale
        var sr = [Float](repeating: 0, count: channels * outH * outW)
        var next = 0
        try upscaleBands(channels: channels, h: h, w: w, scale: scale, tile: tile, overlap: overlap,
            readBand: { y0, rows in
                XCTAssertLessThanOrEqual(rows, tile)
                return (0..<(channels * rows * w)).map { k in lr[(k / (rows * w) * h + y0 + k % (rows * w) / w) * w + k % w] }
            },
            writeRows: { y0, rows, chw in
                XCTAssertEqual(y0, next)
                next += rows
                for c in 0..<channels {
                    for p in 0..<(rows * outW) { sr[(c * outH + y0) * outW + p] = chw[c * rows * outW + p] }
                }
            },
            upscaleTile: upscaleTile)
        XCTAssertEqual(next, outH)
        return sr
    }

    func testBandsEqualTheWholeFrame() throws {
        var generator = SystemRandomNumberGenerator()
        for (h, w, tile) in [(37, 53, 16), (5, 9, 16), (33, 17, 12)] {
            let lr = (0..<(3 * h * w)).map { _ in Float.random(in: 0...1, using: &generator) }
            let toy: ([Float], Tile) -> [Float] = { chw, t in
                let n = t.height * t.width
                return (0..<(3 * n * 9)).map { k in
                    let c = k / (n * 9), y = k % (n * 9) / (t.width * 3) / 3, x = k % (t.width * 3) / 3
                    let v = chw[c * n + y * t.width + x]
                    return v * v + 0.03 * Float(t.y0 + 2 * t.x0 % 5)
                }
            }
            let whole = upscaleTiled(lr: lr, channels: 3, h: h, w: w, scale: 3, tile: tile, overlap: tile / 4, upscaleTile: toy)
            XCTAssertEqual(whole, try streamed(lr, channels: 3, h: h, w: w, scale: 3, tile: tile, overlap: tile / 4, upscaleTile: toy))
        }
    }

    func testOrientation() {
        let raw: [UInt32] = [0, 1, 2, 3, 4, 5]  // 3 wide, 2 tall
        let expected: [Int: [UInt32]] = [1: [0, 1, 2, 3, 4, 5], 2: [2, 1, 0, 5, 4, 3], 3: [5, 4, 3, 2, 1, 0],
                                         4: [3, 4, 5, 0, 1, 2], 5: [0, 3, 1, 4, 2, 5], 6: [3, 0, 4, 1, 5, 2],
                                         7: [5, 2, 4, 1, 3, 0], 8: [2, 5, 1, 4, 0, 3]]
        for (exif, display) in expected {
            let o = Orientation(exif: exif, rawW: 3, rawH: 2)
            XCTAssertEqual(o.toDisplay(y0: 0, rows: o.height, decoded: raw), display, "orientation \(exif)")
        }
    }
}

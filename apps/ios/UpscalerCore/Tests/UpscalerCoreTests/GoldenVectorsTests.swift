import Foundation
import XCTest
@testable import UpscalerCore

/// The Swift core against apps/golden/vectors.json, which the Python pipeline writes and checks too.
final class GoldenVectorsTests: XCTestCase {
    lazy var golden: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../../golden/vectors.json").standardized
        let data = try! Data(contentsOf: url)
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    func flat(_ value: Any) -> [Double] {
        if let list = value as? [Any] { return list.flatMap { flat($0) } }
        return [(value as? NSNumber)?.doubleValue ?? .nan]
    }

    func testTilePlans() {
        for case let c as [String: Any] in golden["tile_plans"] as! [Any] {
            let plan = tilePlan(h: c["h"] as! Int, w: c["w"] as! Int, tile: c["tile"] as! Int, overlap: c["overlap"] as! Int)
            let expected = (c["tiles"] as! [[Int]]).map { Tile(y0: $0[0], x0: $0[1], y1: $0[2], x1: $0[3]) }
            XCTAssertEqual(plan, expected)
        }
    }

    func testEdgeWeights() {
        for case let c as [String: Any] in golden["edge_weights"] as! [Any] {
            let w = edgeWeights(length: c["length"] as! Int, innerStart: c["inner_start"] as! Bool,
                                innerEnd: c["inner_end"] as! Bool, overlapSr: c["overlap_sr"] as! Int)
            XCTAssertEqual(w.map(Double.init), flat(c["weights"]!))
        }
    }

    func testPixelPacking() {
        let pack = golden["pack"] as! [String: Any]
        let rows = pack["argb"] as! [[UInt32]]
        // In Float, as the Kotlin test compares: the vectors hold v / 255 in float64, the apps compute it in Float.
        XCTAssertEqual(argbToChw(rows.flatMap { $0 }, width: rows[0].count, height: rows.count),
                       flat(pack["chw"]!).map { Float($0) })
        let unpack = golden["unpack"] as! [String: Any]
        let out = unpack["argb"] as! [[UInt32]]
        let chw = flat(unpack["chw"]!).map { Float($0) }
        XCTAssertEqual(chwToArgb(chw, width: out[0].count, height: out.count), out.flatMap { $0 })
    }

    func testLatencyStats() {
        let stats = golden["latency_stats"] as! [String: Any]
        let summary = stats["summary"] as! [String: Any]
        let s = summarize(seconds: stats["seconds"] as! [Double])
        XCTAssertEqual(s.medianMs, summary["median_ms"] as! Double, accuracy: 1e-9)
        XCTAssertEqual(s.p90Ms, summary["p90_ms"] as! Double, accuracy: 1e-9)
        XCTAssertEqual(s.runs, summary["runs"] as! Int)
    }

    func testMirrorPad() {
        for case let c as [String: Any] in golden["mirror_pad"] as! [Any] {
            let padded = mirrorPad(flat(c["chw"]!).map { Float($0) }, channels: c["channels"] as! Int,
                                   h: c["h"] as! Int, w: c["w"] as! Int, size: c["size"] as! Int)
            XCTAssertEqual(padded.map(Double.init), flat(c["padded"]!))
        }
    }
}

import PhotosUI
import SwiftUI
import UpscalerCore

/// Pick a photo, upscale it tile by tile with the bundled Core ML model, compare before/after, share.
struct ContentView: View {
    @State private var item: PhotosPickerItem?
    @State private var before: UIImage?
    @State private var after: UIImage?
    @State private var status = "Pick a photo"
    @State private var progress = 0.0

    var body: some View {
        NavigationStack {
            VStack(spacing: 12) {
                HStack {
                    preview(before, label: "before")
                    preview(after, label: "after")
                }
                ProgressView(value: progress)
                Text(status).font(.footnote).monospaced()
                PhotosPicker("Choose photo", selection: $item, matching: .images)
                if let after { ShareLink(item: Image(uiImage: after), preview: SharePreview("sr2bit", image: Image(uiImage: after))) }
            }
            .padding()
            .navigationTitle("sr2bit upscaler")
            .onChange(of: item) { _, newItem in Task { await load(newItem) } }
        }
    }

    private func preview(_ image: UIImage?, label: String) -> some View {
        VStack {
            if let image { Image(uiImage: image).resizable().scaledToFit() } else { Color.gray.opacity(0.2) }
            Text(label).font(.caption)
        }
    }

    private func load(_ newItem: PhotosPickerItem?) async {
        guard let data = try? await newItem?.loadTransferable(type: Data.self), let image = UIImage(data: data) else { return }
        before = image
        after = nil
        status = "Upscaling..."
        let started = Date()
        do {
            let result = try await Task.detached(priority: .userInitiated) { try Upscaling.run(image) { done, total in
                Task { @MainActor in progress = Double(done) / Double(total) }
            } }.value
            after = result
            status = String(format: "%.0f ms for the whole photo (tiles of 64 px, overlap 16)", Date().timeIntervalSince(started) * 1e3)
        } catch {
            status = "Failed: \(error)"
        }
    }
}

/// Bitmap <-> ARGB glue around CoreMLTileUpscaler.
enum Upscaling {
    static func run(_ image: UIImage, progress: @escaping (Int, Int) -> Void) throws -> UIImage {
        guard let url = Bundle.main.url(forResource: "model", withExtension: "mlmodelc"), let cg = image.cgImage else {
            throw UpscaleError.noImage
        }
        let upscaler = try CoreMLTileUpscaler(url: url)
        let (argb, width, height) = pixels(of: cg)
        let out = try upscaler.upscale(argb: argb, width: width, height: height, progress: progress)
        return UIImage(cgImage: makeImage(out, width: width * upscaler.scale, height: height * upscaler.scale))
    }

    static func pixels(of image: CGImage) -> ([UInt32], Int, Int) {
        let width = image.width, height = image.height
        var buffer = [UInt32](repeating: 0, count: width * height)
        let context = CGContext(data: &buffer, width: width, height: height, bitsPerComponent: 8, bytesPerRow: 4 * width,
                                space: CGColorSpaceCreateDeviceRGB(),
                                bitmapInfo: CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)!
        context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
        return (buffer, width, height)
    }

    static func makeImage(_ argb: [UInt32], width: Int, height: Int) -> CGImage {
        var pixels = argb
        let context = CGContext(data: &pixels, width: width, height: height, bitsPerComponent: 8, bytesPerRow: 4 * width,
                                space: CGColorSpaceCreateDeviceRGB(),
                                bitmapInfo: CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)!
        return context.makeImage()!
    }
}

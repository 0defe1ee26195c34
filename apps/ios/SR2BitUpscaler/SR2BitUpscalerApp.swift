import SwiftUI

@main
struct SR2BitUpscalerApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}

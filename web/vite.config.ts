import { defineConfig } from "vite";

// The built dashboard is served by the Python app from src/pelbiot/static.
export default defineConfig({
  base: "/",
  build: {
    outDir: "../src/pelbiot/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", ws: true },
      "/health": "http://127.0.0.1:8000",
    },
  },
});

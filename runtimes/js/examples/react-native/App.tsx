// Live action recognition from the phone camera: grw-edge-runtime over onnxruntime-react-native.
// Frames come from react-native-vision-camera at the manifest's frame rate, scaled to 320x240 RGB
// by vision-camera-resize-plugin; grw-edge-runtime then preprocesses them exactly as in training.
import React, { useEffect, useRef, useState } from "react";
import { Button, FlatList, SafeAreaView, StyleSheet, Text, View } from "react-native";
import {
  Camera, runAtTargetFps, useCameraDevice, useCameraPermission, useFrameProcessor,
} from "react-native-vision-camera";
import { useRunOnJS } from "react-native-worklets-core";
import { useResizePlugin } from "vision-camera-resize-plugin";
import { type Prediction, Session } from "grw-edge-runtime/react-native";

import { artifactFiles } from "./artifact";

const WIDTH = 320, HEIGHT = 240;

export default function App(): React.JSX.Element {
  const device = useCameraDevice("back");
  const { hasPermission, requestPermission } = useCameraPermission();
  const session = useRef<Session | null>(null);
  const busy = useRef(false);
  const [fps, setFps] = useState(5);
  const [top, setTop] = useState<Prediction[]>([]);
  const [latency, setLatency] = useState(0);
  const [message, setMessage] = useState("loading the model…");
  const { resize } = useResizePlugin();

  useEffect(() => {
    requestPermission();
    Session.create(artifactFiles, { backend: "xnnpack", threads: 2 })
      .then(async (opened) => {
        session.current = opened;
        setFps(opened.manifest.fps);
        const report = await opened.selfTest();
        setMessage(report.passed ? `self-test passed (${opened.manifest.backbone})`
          : `self-test FAILED: ${report.problems.join("; ")}`);
      })
      .catch((error: Error) => setMessage(error.message));
    return () => { session.current?.release(); };
  }, [requestPermission]);

  const classify = useRunOnJS(async (data: Uint8Array) => {
    const current = session.current;
    if (!current || busy.current) return;  // drop frames while a step is running
    busy.current = true;
    try {
      const start = Date.now();
      await current.push({ data, width: WIDTH, height: HEIGHT, format: "rgb" });
      const result = await current.classify();
      setLatency(Date.now() - start);
      setTop(result.top);
    } catch (error) {
      setMessage((error as Error).message);
    } finally {
      busy.current = false;
    }
  }, []);

  const frameProcessor = useFrameProcessor((frame) => {
    "worklet";
    runAtTargetFps(fps, () => {
      "worklet";
      const rgb = resize(frame, { scale: { width: WIDTH, height: HEIGHT }, pixelFormat: "rgb", dataType: "uint8" });
      classify(rgb);
    });
  }, [fps, classify, resize]);

  if (!hasPermission || !device) return <Text style={styles.message}>waiting for the camera…</Text>;
  return (
    <SafeAreaView style={styles.screen}>
      <Camera style={styles.camera} device={device} isActive frameProcessor={frameProcessor} pixelFormat="yuv" />
      <View style={styles.panel}>
        <FlatList data={top} keyExtractor={(item) => String(item.index)}
          renderItem={({ item }) => <Text>{item.label}: {(item.score * 100).toFixed(1)}%</Text>} />
        <Text>{latency.toFixed(1)} ms / frame · {message}</Text>
        <Button title="Reset" onPress={() => { session.current?.reset(); setTop([]); }} />
      </View>
    </SafeAreaView>
  );
}

const styles = StyleSheet.create({
  screen: { flex: 1 },
  camera: { flex: 1 },
  panel: { padding: 12, gap: 6 },
  message: { padding: 24 },
});

# Call s11a (H100, 2026-12-07). .bin/bench-before: bench at 0b3b810; .bin/bench: the
# parameter blocks written once a submission (stream.rs) and decode_rows' blocks a step as
# a loop of NB (XNB, a temporary variable; the loop form was not kept); .bin/llama{,-before}:
# `cargo build --release -p backends --features webgpu --example llama` on each tree.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance"; ./.bin/conformance --backend webgpu --adapter vulkan --op gemm_q,unary,binary,gemm,attention_ex,memory --cases 200 2>&1 | grep -v XDG | tail -4
echo "== conformance NB=4 rows"; XNB=4 BACKEND_GEMM_Q_DECODE=rows ./.bin/conformance --backend webgpu --adapter vulkan --op gemm_q --cases 200 2>&1 | grep -v XDG | tail -2
C=dispatch_tiny,latency,gemm_q_q4_0_64x,gemm_q_q4_0_1024x,gemm_q_q4_0_4096x4096_n1,gemm_q_q8_0_4096x4096_n1,gemm_q_q4_0_16384,unary_relu_2^24,binary_add_2^24,attention_decode_b1,mbv2_dw_384,conv2d_small
echo "== torch"; python3 benches/reference/torch_baseline.py --only $C --json $OUT/torch.json 2>&1 | tail -2
for i in 1 2; do
echo "== before $i"; ./.bin/bench-before --backend webgpu --adapter vulkan --only $C --compare $OUT/torch.json --json $OUT/before$i.json 2>&1 | grep -v XDG | tail -n +3
echo "== after $i"; ./.bin/bench --backend webgpu --adapter vulkan --only $C --compare $OUT/torch.json --json $OUT/after$i.json 2>&1 | grep -v XDG | tail -n +3
done
echo "== after host-time"; ./.bin/bench --backend webgpu --adapter vulkan --only dispatch_tiny,gemm_q_q4_0_64x,gemm_q_q4_0_4096x4096_n1 --host-time 2>&1 | grep -v XDG | tail -n +3
for nb in 1 4 8 2; do echo "== NB=$nb"; XNB=$nb ./.bin/bench --backend webgpu --adapter vulkan --only gemm_q_q4_0_4096x4096_n1,gemm_q_q8_0_4096x4096_n1,gemm_q_q4_0_16384,gemm_q_q4_0_2048 --compare $OUT/torch.json 2>&1 | grep -v XDG | tail -n +3; done
echo "== llama before"; ./.bin/llama-before 2>&1 | grep -v XDG | grep "decode step"
echo "== llama after"; ./.bin/llama 2>&1 | grep -v XDG | grep "decode step"
echo "== llama before"; ./.bin/llama-before 2>&1 | grep -v XDG | grep "decode step"
echo "== llama after"; ./.bin/llama 2>&1 | grep -v XDG | grep "decode step"

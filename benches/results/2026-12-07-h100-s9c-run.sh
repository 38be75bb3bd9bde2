for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance"; timeout 100 ./.bin/conformance --backend webgpu --adapter vulkan --op gemm,batched_gemm,gemm_q --cases 48 2>&1 | grep -v XDG | tail -8
echo "== torch"; python3 benches/reference/torch_baseline.py --only gemm_skinny,gemm_q_q4_0_4096x4096_n1 --json $OUT/torch.json 2>&1 | tail -3
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only gemm_skinny,gemm_q_q4_0_4096x4096_n1 --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG

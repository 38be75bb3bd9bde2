for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance (all)"; timeout 240 ./.bin/conformance --backend webgpu --adapter vulkan 2>&1 | grep -v XDG | tail -5
echo "== conformance gemm_q forced"; for d in rows vec; do BACKEND_GEMM_Q_DECODE=$d timeout 60 ./.bin/conformance --backend webgpu --adapter vulkan --op gemm_q --cases 300 2>&1 | grep -v XDG | tail -1; done
echo "== torch"; python3 benches/reference/torch_baseline.py --only gemm_q_,dispatch_tiny,gemm_skinny --json $OUT/torch.json 2>&1 | tail -14
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only gemm_q_,dispatch_tiny,gemm_skinny --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG
for v in vec rows; do echo "== BACKEND_GEMM_Q_DECODE=$v"; BACKEND_GEMM_Q_DECODE=$v ./.bin/bench --backend webgpu --adapter vulkan --only x4096_n1 --compare $OUT/torch.json 2>&1 | grep -v XDG | grep gemm_q; done
echo "== skinny unrolled (bench2)"; ./.bin/bench2 --backend webgpu --adapter vulkan --only gemm_skinny --compare $OUT/torch.json --json $OUT/ours2.json 2>&1 | grep -v XDG | grep skinny
echo "== skinny before (bench) again"; ./.bin/bench --backend webgpu --adapter vulkan --only gemm_skinny --compare $OUT/torch.json 2>&1 | grep -v XDG | grep skinny

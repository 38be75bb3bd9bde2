for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance rows n>4"; XQ=rows XPRE=100000 ./.bin/conformance --backend webgpu --adapter vulkan --op gemm_q --cases 200 2>&1 | grep -v XDG | tail -1
echo "== torch"; python3 benches/reference/torch_baseline.py --only gemm_q_q4_0_4096x4096,dispatch_tiny,gemm_q_q4_0_64x,unary_relu_2^24,binary_add_2^24 --json $OUT/torch.json 2>&1 | tail -1
G=gemm_q_q4_0_4096x4096
echo "== default"; ./.bin/bench --backend webgpu --adapter vulkan --only $G --compare $OUT/torch.json --json $OUT/q-default.json
echo "== rows"; XQ=rows XPRE=100000 ./.bin/bench --backend webgpu --adapter vulkan --only $G --compare $OUT/torch.json --json $OUT/q-rows.json
echo "== main"; XQ=main XPRE=100000 ./.bin/bench --backend webgpu --adapter vulkan --only $G --compare $OUT/torch.json --json $OUT/q-main.json
C=dispatch_tiny,gemm_q_q4_0_64x,unary_relu_2^24,binary_add_2^24
for i in 1 2; do
echo "== nobatch $i"; ./.bin/bench-nobatch --backend webgpu --adapter vulkan --only $C --compare $OUT/torch.json
echo "== batch $i"; ./.bin/bench --backend webgpu --adapter vulkan --only $C --compare $OUT/torch.json
done
for r in 2 4; do echo "== batch ring $r"; XRING=$r ./.bin/bench --backend webgpu --adapter vulkan --only $C --compare $OUT/torch.json; done
echo "== nobatch host"; ./.bin/bench-nobatch --backend webgpu --adapter vulkan --only $C --host-time
echo "== batch host"; ./.bin/bench --backend webgpu --adapter vulkan --only $C --host-time

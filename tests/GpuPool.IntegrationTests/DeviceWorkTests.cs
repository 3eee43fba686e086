using GpuPool.Client;
using GpuPool.Client.Tensors;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>The happy paths of a device session over the network: memory, copies, streams, events, kernels, tensors.</summary>
public sealed class DeviceWorkTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Fact]
    public async Task Elapsed_time_between_two_events_covers_the_work_between_them()
    {
        const int n = 256;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var gemm = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "gemm_f32");
        var pa = await session.AllocAsync(n * n * 4);
        var pc = await session.AllocAsync(n * n * 4);
        await session.CopyToDeviceAsync(pa, RandomFloats(3, n * n));
        var start = await session.CreateEventAsync();
        var end = await session.CreateEventAsync();

        await session.RecordEventAsync(start);
        for (var i = 0; i < 4; i++)
        {
            await session.LaunchAsync(gemm, new Dim3(16, 16), new Dim3(16, 16), GemmArgs(n, n, n, pa, pa, pc));
        }

        await session.RecordEventAsync(end);
        await session.SynchronizeEventAsync(end);

        Assert.True(await session.QueryEventAsync(end));
        var elapsed = await session.ElapsedMillisecondsAsync(start, end);
        Assert.InRange(elapsed, 0.01f, 30_000f);
    }

    [Fact]
    public async Task Elapsed_time_of_an_event_never_recorded_fails_with_InvalidArgument()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var start = await session.CreateEventAsync();
        var end = await session.CreateEventAsync();
        await session.RecordEventAsync(start);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.ElapsedMillisecondsAsync(start, end));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("both events must have been recorded before their elapsed time can be read", error.Message);
    }

    [Theory]
    [InlineData(1, 0xABu)]
    [InlineData(2, 0xBEEFu)]
    [InlineData(4, 0xDEADBEEFu)]
    public async Task Memset_sets_count_elements_to_the_value_and_nothing_else(int elementSize, uint value)
    {
        const int size = 4096;
        const int offset = 256;
        const int count = 100;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(size);

        await session.MemsetAsync(ptr + offset, value, count, elementSize);
        var bytes = await session.CopyToHostAsync<byte>(ptr, size);

        var expected = new byte[size];
        for (var i = 0; i < count * elementSize; i++)
        {
            expected[offset + i] = (byte)(value >> (8 * (i % elementSize)));
        }

        Assert.Equal(expected, bytes);
    }

    [Fact]
    public async Task Device_to_device_copy_moves_the_bytes_within_the_lease()
    {
        const int size = 1 << 20;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var data = new byte[size];
        new Random(5).NextBytes(data);
        var src = await session.AllocAsync(size);
        var dst = await session.AllocAsync(size + 512);
        await session.CopyToDeviceAsync(src, data);

        await session.CopyDeviceToDeviceAsync(dst + 512, src, size);
        var back = await session.CopyToHostAsync<byte>(dst, size + 512);

        Assert.Equal(new byte[512], back[..512]);
        Assert.True(data.AsSpan().SequenceEqual(back.AsSpan(512)), "the copied bytes differ from the source");
    }

    [Fact]
    public async Task Mem_get_info_reports_the_lease_limit_and_what_is_free()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 8UL << 20);
        await using var session = await lease.OpenSessionAsync();

        await session.AllocAsync(3UL << 20);

        Assert.Equal((5UL << 20, 8UL << 20), await session.MemGetInfoAsync());
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task Tensor_matmul_matches_a_host_reference(bool transA, bool transB)
    {
        const int m = 37, k = 53, n = 29;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ops = await TensorOps.CreateAsync(session);
        var a = RandomFloats(7, m * k);
        var b = RandomFloats(8, k * n);
        await using var ta = await DeviceTensor.AllocAsync(session, transA ? k : m, transA ? m : k);
        await using var tb = await DeviceTensor.AllocAsync(session, transB ? n : k, transB ? k : n);
        await using var tc = await DeviceTensor.AllocAsync(session, m, n);
        await ta.UploadAsync(a);
        await tb.UploadAsync(b);

        await ops.MatMulAsync(ta, transA, tb, transB, tc);
        var c = await tc.DownloadAsync();

        AssertClose(HostGemm(a, b, m, n, k, transA, transB), c);
    }

    private static KernelArgs GemmArgs(int m, int n, int k, DevicePtr a, DevicePtr b, DevicePtr c)
        => new KernelArgs().I32(0).I32(0).I32(m).I32(n).I32(k).F32(1).Ptr(a).I32(k).Ptr(b).I32(n).F32(0).Ptr(c).I32(n);

    /// <summary>c = op(a)·op(b) in double, with a and b stored row-major as the device stores them.</summary>
    private static double[] HostGemm(float[] a, float[] b, int m, int n, int k, bool transA, bool transB)
    {
        var c = new double[m * n];
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                double sum = 0;
                for (var p = 0; p < k; p++)
                {
                    var av = transA ? a[(p * m) + i] : a[(i * k) + p];
                    var bv = transB ? b[(j * k) + p] : b[(p * n) + j];
                    sum += (double)av * bv;
                }

                c[(i * n) + j] = sum;
            }
        }

        return c;
    }

    private static void AssertClose(double[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            var tolerance = 1e-4 * Math.Max(1, Math.Abs(expected[i]));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    private static float[] RandomFloats(int seed, int count)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
    }
}

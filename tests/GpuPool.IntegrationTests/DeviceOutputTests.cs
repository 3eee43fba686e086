using System.Text;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests;

/// <summary>
/// Device printf through a real broker: what a lease's kernels print reaches that lease's client at its next
/// synchronizing call, in order, on every transport, and never another lease.
/// </summary>
public sealed class DeviceOutputTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    /// <summary>Each thread prints "device block thread" through vprintf, as nvcc writes printf.</summary>
    private const string Hello = """
        .version 7.0
        .target sm_70
        .address_size 64
        .extern .func (.param .b32 func_retval0) vprintf(.param .b64 vprintf_param_0, .param .b64 vprintf_param_1);
        .global .align 1 .b8 $str[14] = {100, 101, 118, 105, 99, 101, 32, 37, 100, 32, 37, 100, 10, 0};
        .visible .entry hello(.param .u64 unused)
        {
        .local .align 8 .b8 __local_depot0[8];
        .reg .b64 %SP;
        .reg .b64 %SPL;
        .reg .b32 %r<4>;
        .reg .b64 %rd<6>;
        mov.u64 %SPL, __local_depot0;
        cvta.local.u64 %SP, %SPL;
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %tid.x;
        add.u64 %rd1, %SP, 0;
        add.u64 %rd2, %SPL, 0;
        st.local.u32 [%rd2], %r1;
        st.local.u32 [%rd2+4], %r2;
        mov.u64 %rd3, $str;
        cvta.global.u64 %rd4, %rd3;
        {
        .param .b64 param0;
        st.param.b64 [param0+0], %rd4;
        .param .b64 param1;
        st.param.b64 [param1+0], %rd1;
        .param .b32 retval0;
        call.uni (retval0), vprintf, (param0, param1);
        ld.param.b32 %r3, [retval0+0];
        }
        ret;
        }
        """;

    private static readonly string Expected = string.Concat(Enumerable.Range(0, 2).SelectMany(b => Enumerable.Range(0, 3).Select(t => $"device {b} {t}\n")));

    [Theory]
    [InlineData(SessionTransportKind.Grpc)]
    [InlineData(SessionTransportKind.Tcp)]
    public async Task What_a_kernel_prints_reaches_the_client_at_the_next_synchronize_in_order(SessionTransportKind transport)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(transport);
        var printed = new StringBuilder();
        session.DeviceOutput = text => printed.Append(text);
        var kernel = await session.GetFunctionAsync(await session.LoadModuleAsync(Encoding.UTF8.GetBytes(Hello)), "hello");

        await session.LaunchAsync(kernel, new Dim3(2), new Dim3(3), new KernelArgs().U64(0));
        await session.SynchronizeAsync();

        Assert.Equal(Expected, printed.ToString());

        // Said once: the next synchronize brings nothing more.
        await session.SynchronizeAsync();
        Assert.Equal(Expected, printed.ToString());
    }

    [Fact]
    public async Task Another_lease_never_gets_what_this_leases_kernels_print()
    {
        await using var other = await pool.LeaseAsync();
        await using var otherSession = await other.OpenSessionAsync();
        var otherPrinted = new StringBuilder();
        otherSession.DeviceOutput = text => otherPrinted.Append(text);

        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var printed = new StringBuilder();
        session.DeviceOutput = text => printed.Append(text);
        var kernel = await session.GetFunctionAsync(await session.LoadModuleAsync(Encoding.UTF8.GetBytes(Hello)), "hello");
        await session.LaunchAsync(kernel, new Dim3(2), new Dim3(3), new KernelArgs().U64(0));

        // The other lease synchronizes first, while this one's output waits for this one's synchronize.
        await otherSession.SynchronizeAsync();
        await session.SynchronizeAsync();
        await otherSession.SynchronizeAsync();

        Assert.Equal("", otherPrinted.ToString());
        Assert.Equal(Expected, printed.ToString());
    }
}

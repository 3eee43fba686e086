using System.Net.Sockets;
using System.Runtime.InteropServices;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Transport.FastPath;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Tests.Transport;

/// <summary>
/// The fast path's Unix sockets: a broker that was killed leaves its socket file behind, which the next broker of that
/// id removes at start when no process listens on it; a socket a live process listens on is never taken or removed.
/// </summary>
public sealed partial class UnixSocketTests : IAsyncLifetime
{
    private readonly BrokerRig _rig = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-unix-").FullName;
    private readonly List<Socket> _held = [];
    private LeaseTable _table = null!;

    public Task InitializeAsync()
    {
        _table = new LeaseTable(_rig.Options, _rig.Store, NullLogger.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _held.ForEach(s => s.Dispose());
        await _table.DisposeAsync();
        await _rig.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void Sockets_of_this_id_that_no_process_listens_on_are_removed_and_every_other_file_stays()
    {
        var stale = Socket(Name("b7"), listen: false);
        var live = Socket(Name("b7"), listen: true);
        var otherId = Socket(Name("b7-x"), listen: false);
        var notOurs = Path.Combine(_dir, "gpupool-b7-notes.sock");
        File.WriteAllText(notOurs, "an operator's file");

        var removed = FastPathListener.RemoveStaleSockets(_dir, "b7");

        Assert.Equal([stale], removed);
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live) && File.Exists(otherId) && File.Exists(notOurs));
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(live));
    }

    [Fact]
    public async Task A_path_a_live_process_listens_on_is_refused_with_a_clear_error_and_a_stale_one_is_taken()
    {
        var handler = new FastPathConnectionHandler(_table, _rig.Options, NullLogger.Instance);
        var live = Socket(Name("b7"), listen: true);
        var stale = Socket(Name("b7"), listen: false);

        var error = Assert.Throws<IOException>(() => FastPathListener.StartUnix(live, handler));
        await using var listener = FastPathListener.StartUnix(stale, handler);

        Assert.Equal($"the fast path's Unix socket {live} is in use by another process: give this broker another path", error.Message);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(live));
        using var second = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        second.Connect(new UnixDomainSocketEndPoint(stale));
    }

    private string Name(string brokerId) => Path.Combine(_dir, $"gpupool-{brokerId}-{Guid.NewGuid():N}.sock");

    /// <summary>
    /// A socket bound at <paramref name="path"/>: listening (held open), or closed at once, which leaves its file behind
    /// as a killed broker's does. The closed one is made with libc's calls: .NET's Socket removes its file on dispose.
    /// </summary>
    private string Socket(string path, bool listen)
    {
        if (listen)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(4);
            _held.Add(socket);
        }
        else
        {
            Libc.BindAndClose(path);
        }

        Assert.True(File.Exists(path));
        return path;
    }

    private static unsafe partial class Libc
    {
        public static void BindAndClose(string path)
        {
            var fd = socket(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0);
            Assert.True(fd >= 0, $"socket() failed: errno {Marshal.GetLastPInvokeError()}");
            try
            {
                // struct sockaddr_un: sa_family_t (2 bytes), then the path, NUL-terminated, in 108 bytes.
                var address = stackalloc byte[110];
                new Span<byte>(address, 110).Clear();
                *(ushort*)address = 1;
                var bytes = System.Text.Encoding.UTF8.GetBytes(path);
                Assert.True(bytes.Length < 108, $"{path} is too long for a Unix socket");
                bytes.CopyTo(new Span<byte>(address + 2, 108));
                Assert.True(bind(fd, address, 110) == 0, $"bind({path}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
            finally
            {
                close(fd);
            }
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int socket(int domain, int type, int protocol);

        [LibraryImport("libc", SetLastError = true)]
        private static partial int bind(int fd, byte* address, int length);

        [LibraryImport("libc")]
        private static partial int close(int fd);
    }
}

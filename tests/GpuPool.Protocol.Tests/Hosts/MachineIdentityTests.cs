using GpuPool.Protocol.Hosts;

namespace GpuPool.Protocol.Tests.Hosts;

/// <summary>
/// A machine's identity: systemd's machine id, else D-Bus's, else a random one made once and kept in a file, the same
/// for every process that reads that file.
/// </summary>
public sealed class MachineIdentityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-machine-id-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_first_system_file_that_holds_an_id_wins()
    {
        var systemd = Write("etc-machine-id", "3D1219C7C4C5404AAA1F6D2A48ADFDA4\n");
        var dbus = Write("dbus-machine-id", "00000000000000000000000000000001\n");

        Assert.Equal("3d1219c7c4c5404aaa1f6d2a48adfda4", MachineIdentity.Resolve([systemd, dbus], Path.Combine(_dir, "kept")));
        Assert.False(File.Exists(Path.Combine(_dir, "kept")));
    }

    [Fact]
    public void A_missing_empty_or_uninitialized_system_file_is_passed_over()
    {
        var empty = Write("empty", "\n");
        var uninitialized = Write("uninitialized", "uninitialized\n");
        var dbus = Write("dbus", "0123456789abcdef0123456789abcdef");

        Assert.Equal("0123456789abcdef0123456789abcdef", MachineIdentity.Resolve([Path.Combine(_dir, "absent"), empty, uninitialized, dbus], Path.Combine(_dir, "kept")));
    }

    [Fact]
    public void Without_a_system_id_one_is_made_once_kept_and_read_back_by_later_processes()
    {
        var kept = Path.Combine(_dir, "state", MachineIdentity.StateFileName);

        var made = MachineIdentity.Resolve([Path.Combine(_dir, "absent")], kept);
        var again = MachineIdentity.Resolve([Path.Combine(_dir, "absent")], kept);

        Assert.True(MachineIdentity.IsValid(made), made);
        Assert.Equal(made, again);
        Assert.Equal(made, File.ReadAllText(kept).Trim());
    }

    [Fact]
    public void Processes_making_an_id_at_the_same_time_agree_on_one()
    {
        // Twenty rounds, each on a fresh file: threads of one process race as processes do (they once shared a temporary
        // file, and a thread returned an id another thread's write had replaced).
        for (var round = 0; round < 20; round++)
        {
            var kept = Path.Combine(_dir, $"shared-id-{round}");

            var ids = Enumerable.Range(0, 16).AsParallel().WithDegreeOfParallelism(8).Select(_ => MachineIdentity.Resolve([], kept)).ToArray();

            Assert.Single(ids.Distinct());
            Assert.Equal(ids[0], File.ReadAllText(kept).Trim());
        }
    }

    [Fact]
    public void This_machines_id_is_its_system_id_when_it_has_one()
    {
        var system = MachineIdentity.SystemFiles.Where(File.Exists).Select(f => File.ReadAllText(f).Trim().ToLowerInvariant()).FirstOrDefault(MachineIdentity.IsValid);

        var id = MachineIdentity.Get();

        Assert.True(MachineIdentity.IsValid(id), id);
        if (system is not null)
        {
            Assert.Equal(system, id);
        }
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }
}

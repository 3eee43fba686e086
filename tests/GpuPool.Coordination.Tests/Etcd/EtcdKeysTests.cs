using GpuPool.Coordination.Etcd.Internal;

namespace GpuPool.Coordination.Tests.Etcd;

public sealed class EtcdKeysTests
{
    [Theory]
    [InlineData(new byte[] { 0x61 }, new byte[] { 0x62 })]
    [InlineData(new byte[] { 0x61, 0x2f }, new byte[] { 0x61, 0x30 })]
    [InlineData(new byte[] { 0x61, 0xff, 0xff }, new byte[] { 0x62 })]
    [InlineData(new byte[] { 0xff, 0xff }, new byte[] { 0x00 })]
    public void RangeEnd_IsTheFirstKeyPastThePrefix(byte[] prefix, byte[] end)
    {
        Assert.Equal(end, EtcdKeys.RangeEnd(prefix).ToByteArray());
    }

    [Fact]
    public void Keys_GoBehindTheConfiguredPrefix_AndComeBackWithoutIt()
    {
        var keys = new EtcdKeys("pool/");

        var etcdKey = keys.ToEtcd("leases/é");
        var (start, end) = keys.Range("");

        Assert.Equal("pool/leases/é", etcdKey.ToStringUtf8());
        Assert.Equal("leases/é", keys.FromEtcd(etcdKey));
        Assert.Null(keys.FromEtcd(Google.Protobuf.ByteString.CopyFromUtf8("other/leases/1")));
        Assert.Equal(("pool/", "pool0"), (start.ToStringUtf8(), end.ToStringUtf8()));
        var (all, allEnd) = new EtcdKeys("").Range("");
        Assert.Equal([0], all.ToByteArray());
        Assert.Equal([0], allEnd.ToByteArray());
    }
}

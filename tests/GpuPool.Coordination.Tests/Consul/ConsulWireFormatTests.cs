using System.Text;
using System.Text.Json;
using GpuPool.Coordination.Consul;
using GpuPool.Coordination.Consul.Internal;

namespace GpuPool.Coordination.Tests.Consul;

/// <summary>
/// The driver's JSON against the formats Consul documents for each endpoint it uses: requests serialised as the
/// API docs' sample payloads have them, and the docs' sample responses (or, where the docs only show
/// placeholders, bodies built from the documented fields and the error texts of Consul's source) parsed.
/// These need no Consul; they check the client against Consul's wire format, not a Consul against the contract.
/// </summary>
public sealed class ConsulWireFormatTests
{
    // GET /v1/kv/:key, "Metadata Response" sample of the KV Store HTTP API docs.
    private const string KvReadSample = """
        [
          {
            "CreateIndex": 100,
            "ModifyIndex": 200,
            "LockIndex": 200,
            "Key": "zip",
            "Flags": 0,
            "Value": "dGVzdA==",
            "Session": "adf4238a-882b-9ddc-4a9d-5b6758e4159e"
          }
        ]
        """;

    // PUT /v1/txn answered 200: the shape of the Transactions HTTP API docs' sample response, with the fields a
    // current Consul adds (Partition, Namespace) and a null Value, as write verbs' results have.
    private const string TxnCommittedSample = """
        {
          "Results": [
            { "KV": { "LockIndex": 0, "Key": "data/dev", "Flags": 0, "Value": null, "Partition": "default", "Namespace": "default", "CreateIndex": 22, "ModifyIndex": 22 } },
            { "KV": { "LockIndex": 1, "Key": "data/lock", "Flags": 0, "Value": null, "Session": "adf4238a-882b-9ddc-4a9d-5b6758e4159e", "CreateIndex": 20, "ModifyIndex": 22 } }
          ],
          "Errors": null
        }
        """;

    // PUT /v1/txn answered 409: Results null, one error per failed operation, with the texts of Consul's state store.
    private const string TxnRolledBackSample = """
        {
          "Results": null,
          "Errors": [
            { "OpIndex": 0, "What": "failed index check for key \"jobs/a\", current modify index 7 != 5" },
            { "OpIndex": 2, "What": "key \"jobs/x\" exists" },
            { "OpIndex": 4, "What": "invalid session \"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"" }
          ]
        }
        """;

    // GET /v1/session/info/:uuid and PUT /v1/session/renew/:uuid sample response of the Session HTTP API docs.
    private const string SessionInfoSample = """
        [
          {
            "ID": "adf4238a-882b-9ddc-4a9d-5b6758e4159e",
            "Name": "test-session",
            "Node": "raja-laptop-02",
            "LockDelay": 15000000000,
            "Behavior": "release",
            "TTL": "30s",
            "NodeChecks": [
              "serfHealth"
            ],
            "ServiceChecks": null,
            "CreateIndex": 1086449,
            "ModifyIndex": 1086449
          }
        ]
        """;

    // GET /v1/health/service/:service sample response of the Health HTTP API docs.
    private const string HealthServiceSample = """
        [
          {
            "Node": {
              "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
              "Node": "foobar",
              "Address": "10.1.10.12",
              "Datacenter": "dc1",
              "TaggedAddresses": { "lan": "10.1.10.12", "wan": "10.1.10.12" },
              "Meta": { "instance_type": "t2.medium" }
            },
            "Service": {
              "ID": "redis",
              "Service": "redis",
              "Tags": ["primary"],
              "Address": "10.1.10.12",
              "TaggedAddresses": {
                "lan": { "address": "10.1.10.12", "port": 8000 },
                "wan": { "address": "198.18.1.2", "port": 80 }
              },
              "Meta": { "redis_version": "4.0" },
              "Port": 8000,
              "Weights": { "Passing": 10, "Warning": 1 },
              "Namespace": "default"
            },
            "Checks": [
              {
                "Node": "foobar",
                "CheckID": "service:redis",
                "Name": "Service 'redis' check",
                "Status": "passing",
                "Notes": "",
                "Output": "",
                "ServiceID": "redis",
                "ServiceName": "redis",
                "ServiceTags": ["primary"],
                "Namespace": "default"
              },
              {
                "Node": "foobar",
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Namespace": "default"
              }
            ]
          }
        ]
        """;

    [Fact]
    public void KvRead_DocsSample_ParsesIndexesValueAndSession()
    {
        var pair = Assert.Single(Parse(KvReadSample, ConsulJsonContext.Default.ListConsulKvPair));

        Assert.Equal(("zip", 100UL, 200UL, 200UL, "test", "adf4238a-882b-9ddc-4a9d-5b6758e4159e"),
            (pair.Key, pair.CreateIndex, pair.ModifyIndex, pair.LockIndex, Encoding.UTF8.GetString(pair.Value!), pair.Session));
    }

    [Fact]
    public void KvRead_OfAnEmptyValueWithoutASession_ParsesAsNulls()
    {
        var pair = Assert.Single(Parse("""[{"LockIndex":0,"Key":"a","Flags":0,"Value":null,"CreateIndex":5,"ModifyIndex":5}]""", ConsulJsonContext.Default.ListConsulKvPair));

        Assert.Null(pair.Value);
        Assert.Null(pair.Session);
    }

    [Fact]
    public void TxnRequest_HasTheDocumentedShape_OneKvObjectPerOperation_ValuesInBase64()
    {
        var session = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
        var ops = ConsulTxnPlanner.Plan(
            [new TxnCheck("jobs/a", 5), TxnCheck.Absent("jobs/b")],
            [TxnWrite.Put("jobs/b", "one"u8.ToArray()), TxnWrite.Put("jobs/lock", "me"u8.ToArray(), session), TxnWrite.Delete("jobs/a")],
            _ => null,
            strict: false);

        var json = Encoding.UTF8.GetString(ConsulHttpClient.SerializeTxn(ops.ConvertAll(o => o.Op)));

        Assert.Equal(
            """[{"KV":{"Verb":"check-index","Key":"jobs/a","Index":5}},{"KV":{"Verb":"check-not-exists","Key":"jobs/b"}},{"KV":{"Verb":"cas","Key":"jobs/b","Value":"b25l","Index":0}},{"KV":{"Verb":"lock","Key":"jobs/lock","Value":"bWU=","Session":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"}},{"KV":{"Verb":"delete","Key":"jobs/a"}}]""",
            json);
    }

    [Fact]
    public void TxnRequest_UsesOnlyVerbsConsulDocuments()
    {
        string[] documented = ["set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session", "check-not-exists", "delete", "delete-tree", "delete-cas"];

        string[] used = [ConsulTxnPlanner.Cas, ConsulTxnPlanner.Lock, ConsulTxnPlanner.Unlock, ConsulTxnPlanner.Get, ConsulTxnPlanner.Delete, ConsulTxnPlanner.CheckIndex, ConsulTxnPlanner.CheckNotExists];

        Assert.All(used, verb => Assert.Contains(verb, documented));
    }

    [Fact]
    public void TxnCommitted_Sample_ParsesTheResultsIndexes()
    {
        var response = Parse(TxnCommittedSample, ConsulJsonContext.Default.ConsulTxnResponse);

        Assert.Null(response.Errors);
        Assert.Equal(22, ConsulTxnPlanner.IndexOf(response.Results, "data/dev"));
        Assert.Equal(22, ConsulTxnPlanner.IndexOf(response.Results, "data/lock"));
        Assert.Equal(0, ConsulTxnPlanner.IndexOf(response.Results, "absent"));
        Assert.Equal("adf4238a-882b-9ddc-4a9d-5b6758e4159e", response.Results![1].KV!.Session);
    }

    [Fact]
    public void TxnRolledBack_Sample_NamesTheFailedChecksAndTheLockOfAMissingSession()
    {
        var session = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
        var ops = ConsulTxnPlanner.Plan(
            [new TxnCheck("jobs/a", 5), TxnCheck.Absent("jobs/b"), TxnCheck.Absent("jobs/x")],
            [TxnWrite.Put("jobs/b", "b"u8.ToArray()), TxnWrite.Put("jobs/lock", "me"u8.ToArray(), session)],
            _ => null,
            strict: false);
        var response = Parse(TxnRolledBackSample, ConsulJsonContext.Default.ConsulTxnResponse);

        var failure = ConsulTxnPlanner.Classify(ops, response.Errors);

        Assert.Null(response.Results);
        Assert.Equal(["jobs/a", "jobs/x"], failure.FailedChecks);
        Assert.Equal([session], failure.LockSessions);
        Assert.False(failure.LockDelay);
        Assert.Null(failure.PermissionDenied);
    }

    [Fact]
    public void TxnRolledBack_ByLockDelayOrAcl_IsRecognised()
    {
        var ops = ConsulTxnPlanner.Plan([], [TxnWrite.Put("leader", "me"u8.ToArray(), "adf4238a-882b-9ddc-4a9d-5b6758e4159e")], _ => null, strict: false);
        var delayed = Parse("""{"Results":null,"Errors":[{"OpIndex":0,"What":"failed to lock key \"leader\" due to lock delay"}]}""", ConsulJsonContext.Default.ConsulTxnResponse);
        var denied = Parse("""{"Results":null,"Errors":[{"OpIndex":0,"What":"Permission denied"}]}""", ConsulJsonContext.Default.ConsulTxnResponse);

        var byDelay = ConsulTxnPlanner.Classify(ops, delayed.Errors);
        var byAcl = ConsulTxnPlanner.Classify(ops, denied.Errors);

        Assert.True(byDelay.LockDelay);
        Assert.Empty(byDelay.LockSessions);
        Assert.Equal("Permission denied", byAcl.PermissionDenied);
    }

    [Fact]
    public void SessionCreate_RequestHasTheDocumentedFields_AndTheResponseGivesTheId()
    {
        var request = new ConsulSessionCreateRequest { Name = "gpupool", TTL = "15s", Behavior = "delete", LockDelay = "0s" };

        var json = JsonSerializer.Serialize(request, ConsulJsonContext.Default.ConsulSessionCreateRequest);
        var created = Parse("""{ "ID": "adf4238a-882b-9ddc-4a9d-5b6758e4159e" }""", ConsulJsonContext.Default.ConsulSessionCreateResponse);

        Assert.Equal("""{"Name":"gpupool","TTL":"15s","Behavior":"delete","LockDelay":"0s"}""", json);
        Assert.Equal("adf4238a-882b-9ddc-4a9d-5b6758e4159e", created.ID);
    }

    [Fact]
    public void SessionInfo_DocsSample_Parses_WithItsNumericLockDelayIgnored()
    {
        var session = Assert.Single(Parse(SessionInfoSample, ConsulJsonContext.Default.ListConsulSessionInfo));

        Assert.Equal(("adf4238a-882b-9ddc-4a9d-5b6758e4159e", "30s", "release"), (session.ID, session.TTL, session.Behavior));
        Assert.Empty(Parse("[]", ConsulJsonContext.Default.ListConsulSessionInfo));
    }

    [Fact]
    public void ServiceRegister_RequestHasTheDocumentedFields_WithATtlCheckThatStartsPassing()
    {
        var registration = new ConsulServiceRegistration
        {
            ID = "broker-1",
            Name = "gpupool-broker",
            Address = "10.0.0.5",
            Port = 7071,
            Meta = new Dictionary<string, string> { ["devices"] = "8" },
            Check = new ConsulServiceCheck { CheckID = "service:broker-1", Name = "gpupool TTL check of broker-1", TTL = "10s", Status = "passing", DeregisterCriticalServiceAfter = "90m" },
        };

        var json = JsonSerializer.Serialize(registration, ConsulJsonContext.Default.ConsulServiceRegistration);

        Assert.Equal(
            """{"ID":"broker-1","Name":"gpupool-broker","Address":"10.0.0.5","Port":7071,"Meta":{"devices":"8"},"Check":{"CheckID":"service:broker-1","Name":"gpupool TTL check of broker-1","TTL":"10s","Status":"passing","DeregisterCriticalServiceAfter":"90m"}}""",
            json);
    }

    [Fact]
    public void HealthService_DocsSample_MapsToAPassingInstanceWithItsMeta()
    {
        var entries = Parse(HealthServiceSample, ConsulJsonContext.Default.ListConsulServiceEntry);

        var instance = Assert.Single(ConsulClusterStore.ToServiceInstances(entries));

        Assert.Equal(("redis", "redis", "10.1.10.12", 8000, ServiceHealth.Passing), (instance.Id, instance.Name, instance.Address, instance.Port, instance.Health));
        Assert.Equal("4.0", instance.Meta["redis_version"]);
    }

    [Fact]
    public void HealthService_WithACriticalCheck_OrNoServiceAddress_MapsToCriticalAtTheNodesAddress()
    {
        var critical = HealthServiceSample.Replace("\"Status\": \"passing\",\n        \"Notes\": \"\",\n        \"Output\": \"\",\n        \"ServiceID\": \"redis\"", "\"Status\": \"critical\",\n        \"Notes\": \"\",\n        \"Output\": \"TTL expired\",\n        \"ServiceID\": \"redis\"", StringComparison.Ordinal)
            .Replace("\"Address\": \"10.1.10.12\",\n      \"TaggedAddresses\": {\n        \"lan\": {", "\"Address\": \"\",\n      \"TaggedAddresses\": {\n        \"lan\": {", StringComparison.Ordinal);
        Assert.NotEqual(HealthServiceSample, critical);

        var instance = Assert.Single(ConsulClusterStore.ToServiceInstances(Parse(critical, ConsulJsonContext.Default.ListConsulServiceEntry)));

        Assert.Equal((ServiceHealth.Critical, "10.1.10.12"), (instance.Health, instance.Address));
    }

    [Fact]
    public void KeysAndPrefixes_GoInTheUrlPath_OneEscapedSegmentEach()
    {
        Assert.Equal("/v1/kv/", ConsulHttpClient.KvPath(""));
        Assert.Equal("/v1/kv/gpupool/leases/", ConsulHttpClient.KvPath("gpupool/leases/"));
        Assert.Equal("/v1/kv/n/%C3%A9/a%3Fb%23c%25d%20e", ConsulHttpClient.KvPath("n/é/a?b#c%d e"));
    }

    [Fact]
    public void Durations_AreGoDurationStrings()
    {
        Assert.Equal("0s", GoDuration.Format(TimeSpan.Zero));
        Assert.Equal("15s", GoDuration.Format(TimeSpan.FromSeconds(15)));
        Assert.Equal("1500ms", GoDuration.Format(TimeSpan.FromMilliseconds(1500)));
        Assert.Equal("2ms", GoDuration.Format(TimeSpan.FromTicks(TimeSpan.TicksPerMillisecond + 1)));
        Assert.Equal("86400s", GoDuration.Format(ConsulStoreOptions.MaxSessionTtl));
    }

    private static T Parse<T>(string json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        JsonSerializer.Deserialize(json, type) ?? throw new InvalidOperationException("null");
}

using Xunit.Abstractions;
using Xunit.Sdk;

namespace GpuPool.Coordination.Tests;

/// <summary>
/// A contract test of <see cref="ClusterStoreContract"/>. It runs like a [Fact], except that a driver's test class
/// can skip it with a <see cref="ContractSkipAttribute"/>: every test when the driver's server cannot be had, or one
/// test for a documented limitation of the driver. A skipped test shows as skipped, with its reason, in
/// <c>dotnet test</c>'s output and the trx; it never counts as passed.
/// </summary>
/// <remarks>
/// xUnit 2 decides a skip when it discovers a test, from the attribute on the method; the contract's methods are
/// declared once in the base class, so the decision needs the derived class, which only a test case discoverer
/// sees (<see cref="ITestMethod.TestClass"/> is the class the test runs in).
/// </remarks>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
[XunitTestCaseDiscoverer("GpuPool.Coordination.Tests.StoreFactDiscoverer", "GpuPool.Coordination.Tests")]
public sealed class StoreFactAttribute : FactAttribute;

/// <summary>Put on a driver's test class to skip contract tests: <see cref="SkipReason"/> returns why, or null to run the test.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = true)]
public abstract class ContractSkipAttribute : Attribute
{
    public abstract string? SkipReason(string testMethodName);
}

/// <summary>Discovers <see cref="StoreFactAttribute"/> tests as <see cref="StoreTestCase"/>s.</summary>
public sealed class StoreFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    protected override IXunitTestCase CreateTestCase(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute) =>
        new StoreTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod);
}

/// <summary>A contract test case whose skip reason comes from the test class's <see cref="ContractSkipAttribute"/>.</summary>
public sealed class StoreTestCase : XunitTestCase
{
    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public StoreTestCase()
    {
    }

    public StoreTestCase(IMessageSink diagnosticMessageSink, TestMethodDisplay defaultMethodDisplay, TestMethodDisplayOptions defaultMethodDisplayOptions, ITestMethod testMethod)
        : base(diagnosticMessageSink, defaultMethodDisplay, defaultMethodDisplayOptions, testMethod)
    {
    }

    protected override string? GetSkipReason(IAttributeInfo factAttribute)
    {
        if (base.GetSkipReason(factAttribute) is { } declared)
        {
            return declared;
        }

        var testClass = TestMethod.TestClass.Class.ToRuntimeType();
        var skip = testClass?.GetCustomAttributes(typeof(ContractSkipAttribute), inherit: true).OfType<ContractSkipAttribute>().FirstOrDefault();
        return skip?.SkipReason(TestMethod.Method.Name);
    }
}

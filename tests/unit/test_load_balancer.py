"""The balanced topology: ALB over N nodes across AZs, TLS via ACM, WAF rate limiting."""

import harness
from components import load_balancer

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-1111-2222-3333-444455556666"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def _run(config=None):
    run = harness.run({"topology": "balanced", **(config or {})})
    assert run.error is None, run.error
    return run


def test_nodes_are_spread_over_the_subnets_and_registered_as_targets():
    run = _run({"instanceCount": "4"})
    instances = run.of_type("aws:ec2/instance:Instance")
    assert len(instances) == 4
    subnets = [i.props["subnetId"] for i in sorted(instances, key=lambda i: i.name)]
    assert len(set(subnets)) == 3 and subnets[0] == subnets[3]
    targets = run.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert sorted(t.props["targetId"] for t in targets) == sorted(i.id for i in instances)
    assert {t.props["port"] for t in targets} == {80}
    alb = run.resource("aws:lb/loadBalancer:LoadBalancer")
    assert alb.props["loadBalancerType"] == "application" and len(alb.props["subnets"]) == 3
    assert alb.props["dropInvalidHeaderFields"] is True
    assert len(run.of_type("robot:aws:Bootstrap")) == 4


def test_health_check_uses_the_robot_health_path():
    tg = _run({"healthPath": "/healthz"}).resource("aws:lb/targetGroup:TargetGroup")
    assert tg.props["healthCheck"]["path"] == "/healthz" and tg.props["healthCheck"]["matcher"] == "200"
    assert tg.props["port"] == 80 and tg.props["protocol"] == "HTTP"


def test_https_with_a_certificate_and_http_redirects():
    run = _run({"certificateArn": CERT})
    listeners = {l.props["port"]: l.props for l in run.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"] == CERT
    assert listeners[443]["sslPolicy"] == load_balancer.SSL_POLICY
    assert listeners[443]["defaultActions"][0]["type"] == "forward"
    redirect = listeners[80]["defaultActions"][0]
    assert redirect["type"] == "redirect" and redirect["redirect"]["protocol"] == "HTTPS"
    dns = run.resource("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]
    assert run.outputs["endpointUrl"].value == f"https://{dns}/api/v1/chat"
    assert run.outputs["loadBalancerDnsName"].value == dns and "publicIp" not in run.outputs


def test_without_a_certificate_http_forwards():
    run = _run()
    listeners = run.of_type("aws:lb/listener:Listener")
    assert [l.props["port"] for l in listeners] == [80]
    assert listeners[0].props["defaultActions"][0]["type"] == "forward"
    assert run.outputs["healthUrl"].value.startswith("http://")


def test_waf_blocks_an_address_over_the_guide_threshold():
    run = _run({"ddosRequestsPerSecond": "1000", "ddosWindowSeconds": "60"})
    acl = run.resource("aws:wafv2/webAcl:WebAcl")
    assert acl.props["scope"] == "REGIONAL" and "allow" in acl.props["defaultAction"]
    (rule,) = acl.props["rules"]
    rate = rule["statement"]["rateBasedStatement"]
    assert (rate["limit"], rate["evaluationWindowSec"], rate["aggregateKeyType"]) == (60000, 60, "IP")
    assert "block" in rule["action"]
    association = run.resource("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.props["resourceArn"] == run.resource("aws:lb/loadBalancer:LoadBalancer").state["arn"]
    assert association.props["webAclArn"] == acl.state["arn"]


def test_waf_limit_bounds():
    assert load_balancer.waf_limit(1000, 60) == 60000
    assert load_balancer.waf_limit(1, 1) == 10


def test_nodes_take_web_traffic_from_the_load_balancer_only():
    run = _run({"certificateArn": CERT})
    groups = {g.name: g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup")}
    lb_sg, node_sg = groups["lb-sg"], groups["robot-sg"]
    node_rules = [r.props for r in run.of_type(INGRESS) if r.props["securityGroupId"] == node_sg.id]
    web = [p for p in node_rules if p["fromPort"] != 22]
    assert web == [{**web[0], "fromPort": 80, "toPort": 80, "referencedSecurityGroupId": lb_sg.id}]
    assert all("cidrIpv4" not in p for p in web)
    lb_rules = [r.props for r in run.of_type(INGRESS) if r.props["securityGroupId"] == lb_sg.id]
    assert sorted((p["fromPort"], p["cidrIpv4"]) for p in lb_rules) == [(80, "203.0.113.0/24"), (443, "203.0.113.0/24")]
    assert run.resource("aws:lb/loadBalancer:LoadBalancer").props["securityGroups"] == [lb_sg.id]


def test_nginx_trusts_forwarded_addresses_from_the_vpc_only():
    run = _run()
    values = harness.settings_env(run, "robot-0-bootstrap")
    assert values["ROBOT_TRUSTED_PROXIES"] == "172.31.0.0/16"
    assert values["ROBOT_TOPOLOGY"] == "balanced"
    single = harness.run().resource("command:remote:Command", "robot-bootstrap-run")
    assert "ROBOT_TRUSTED_PROXIES=''" in single.props["triggers"][2]

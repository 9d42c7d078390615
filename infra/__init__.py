"""The platform on EKS with Karpenter, as Pulumi ComponentResources built from pulumi_aws and pulumi_kubernetes."""
